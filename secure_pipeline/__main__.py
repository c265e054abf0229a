"""`python -m secure_pipeline` behaves exactly like the `secure-pipeline` console script."""

from secure_pipeline.cli import main

raise SystemExit(main())
