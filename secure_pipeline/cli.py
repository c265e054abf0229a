"""The `secure-pipeline` command line: parses options, calls the library, maps errors to exit codes.

Exit codes: 0 success, 1 the check said no, 2 bad input, 3 infrastructure failure. Reports go to
`--json OUT` (`-` = standard output); human-readable text goes to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from secure_pipeline.errors import BadInputError, CheckFailedError, SecurePipelineError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage mistakes are one `error:` line with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(message: str) -> None:
    _say(f"secure-pipeline: {message}")


def _write_json(document: Any, out: str | None) -> None:
    if out is None:
        return
    text = json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"{out}: cannot write the JSON report ({exc.strerror}); choose a writable path for --json") from exc


def _optional(value: str | None) -> str | None:
    """Empty strings (as MLproject passes for unset parameters) mean 'not given'."""
    return value or None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def cmd_run(args: argparse.Namespace) -> int:
    from secure_pipeline import runner

    options = runner.RunOptions(
        config=_path(args.config),
        data=_path(args.data),
        target=_optional(args.target),
        reference=_path(args.reference),
        model_name=_optional(args.model_name),
        alias=_optional(args.alias),
        key=_path(args.key),
        policy=_path(args.policy),
        tracking_uri=_optional(args.tracking_uri),
        demo=_optional(args.demo),
    )
    if options.demo not in (None, "clean", "poisoned"):
        raise BadInputError(f"--demo {options.demo}: unknown demo; choose clean or poisoned")
    if options.data is not None and options.target is None and options.config is None:
        raise BadInputError("--data needs --target COLUMN (or a --config with data.target)")
    outcome = runner.run(options, progress=_progress)
    _write_json(outcome.to_json(), args.json)
    decision = outcome.evidence["policy"]
    for check_name, check in outcome.evidence["data"]["checks"].items():
        _say(f"  data gate {check_name}: {check['status']} — {check['summary']}")
    for warning in decision["warnings"]:
        _say(f"  warning [{warning['rule']}]: {warning['message']}")
    if outcome.promoted:
        _say(f"PROMOTED: {outcome.model_name} version {outcome.version} is now @{outcome.alias} (run {outcome.run_id}).")
        key = f" --public-key {outcome.public_key}" if outcome.public_key else " --public-key PUBLIC_KEY_PEM"
        _say(f"  verify before use: secure-pipeline verify models:/{outcome.model_name}@{outcome.alias}{key}")
        _say(f"  inspect: mlflow ui --backend-store-uri {outcome.tracking_uri}")
        return 0
    _say(f"BLOCKED: policy denied {outcome.model_name}; @{outcome.alias} did not move (run {outcome.run_id}).")
    for violation in decision["violations"]:
        _say(f"  deny [{violation['rule']}]: {violation['message']}")
    return 1


def cmd_scan_data(args: argparse.Namespace) -> int:
    from secure_pipeline import runner
    from secure_pipeline.config import load_config

    config = load_config(_path(args.config))
    if args.tracking_uri:
        config = config.model_copy(update={"tracking": config.tracking.model_copy(update={"uri": args.tracking_uri})})
    log = bool(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    report = runner.scan_data(Path(args.data), args.target, reference=_path(args.reference), config=config, progress=_progress, log_to_mlflow=log)
    _write_json(report, args.json)
    for name, check in report["checks"].items():
        rows = f" rows {check['rows'][:10]}{'…' if len(check['rows']) > 10 else ''}" if check["rows"] else ""
        _say(f"  {name}: {check['status']} — {check['summary']}{rows}")
    _say(f"data gate {'PASSED' if report['passed'] else 'FAILED'} for {args.data} ({report['rows']} rows, {report['dataset_digest']})")
    return 0 if report["passed"] else 1


def cmd_sign(args: argparse.Namespace) -> int:
    from secure_pipeline import signing
    from secure_pipeline.verification import default_signature

    model = Path(args.model_path)
    out = Path(args.signature) if args.signature else default_signature(model)
    signed = signing.sign_model(model, out, signing.Signer(private_key=Path(args.key), password=signing.password_from_env(args.password_env)))
    _say(f"signed {len(signed.files)} file(s) of {model}: {signed.digest}")
    _say(f"  signature: {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from secure_pipeline import verification

    try:
        if args.target.startswith("models:/"):
            verified = verification.verify_registered(args.target, Path(args.public_key), tracking_uri=_optional(args.tracking_uri))
        else:
            verified = verification.verify_local(Path(args.target), Path(args.public_key), _path(args.signature))
    except CheckFailedError as exc:
        _write_json({"schema": "secure-pipeline/verification/v1", "verified": False, "target": args.target, "reason": str(exc)}, args.json)
        raise
    _write_json(verified.to_json(), args.json)
    extra = f" (version {verified.version}, attested decision allow)" if verified.version else ""
    _say(f"VERIFIED: {args.target}{extra}: {len(verified.files)} file(s) match the signature, digest {verified.digest}")
    return 0


def cmd_scan_model(args: argparse.Namespace) -> int:
    from secure_pipeline import scanning

    report = scanning.scan_path(Path(args.path))
    _write_json(report.to_json(), args.json)
    for issue in report.issues:
        _say(f"  UNSAFE {issue.message}")
    _say(f"{'clean' if report.clean else 'UNSAFE'}: {report.files_scanned} file(s) scanned in {args.path}")
    return 0 if report.clean else 1


def cmd_policy(args: argparse.Namespace) -> int:
    from secure_pipeline import evidence, policy

    document = evidence.load(Path(args.evidence))
    decision = policy.evaluate(document, _path(args.policy))
    _write_json(decision.to_json(), args.json)
    _say(f"decision: {'ALLOW' if decision.allow else 'DENY'} (policy {decision.policy_digest})")
    for violation in decision.violations:
        _say(f"  deny [{violation.rule}]: {violation.message}")
    for warning in decision.warnings:
        _say(f"  warn [{warning.rule}]: {warning.message}")
    return 0 if decision.allow else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (also used by the docs test)."""
    parser = _Parser(prog="secure-pipeline", description="Enforced, evidenced security gates for ML models on MLflow.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", metavar="OUT", help="write the JSON report to OUT ('-' = standard output)")

    run = commands.add_parser("run", help="the whole lifecycle: data gate, train, sign, policy, promote",
                              description="Run the whole lifecycle. With no arguments: the bundled demo data, a local MLflow store.")
    run.add_argument("--config", help="YAML config file (see secure_pipeline/demo-config.yaml)")
    run.add_argument("--data", help="training data, CSV or Parquet")
    run.add_argument("--target", help="label column of --data")
    run.add_argument("--reference", help="trusted reference data for schema and range checks")
    run.add_argument("--model-name", help="registered model name (default: from config, else the data file name)")
    run.add_argument("--alias", help="registry alias to move on promotion (default: champion)")
    run.add_argument("--key", help="EC private key (PEM) to sign with (default: config, else development keys)")
    run.add_argument("--policy", help="directory of Rego policy packs (default: the bundled policies)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    run.add_argument("--demo", metavar="{clean,poisoned}", help="run on the bundled demo data (the default, clean, when no data or config is given)")
    json_option(run)
    run.set_defaults(handler=cmd_run)

    scan = commands.add_parser("scan-data", help="the data gate on its own", description="Validate training data: schema, label noise, poisoning, personal data.")
    scan.add_argument("data", metavar="DATA", help="CSV or Parquet file")
    scan.add_argument("--target", required=True, metavar="COLUMN", help="label column")
    scan.add_argument("--reference", metavar="REF", help="trusted reference data (CSV or Parquet)")
    scan.add_argument("--config", metavar="FILE", help="YAML config file with check settings")
    scan.add_argument("--tracking-uri", help="also log the report to this MLflow tracking server")
    json_option(scan)
    scan.set_defaults(handler=cmd_scan_data)

    sign = commands.add_parser("sign", help="sign a model file or directory (OpenSSF model signing)",
                               description="Hash every file of MODEL_PATH and write a Sigstore bundle that `model_signing verify key` accepts.")
    sign.add_argument("model_path", metavar="MODEL_PATH")
    sign.add_argument("--key", required=True, metavar="PRIVATE_KEY_PEM", help="EC P-256/P-384/P-521 private key, PEM")
    sign.add_argument("--signature", metavar="OUT", help="bundle path (default: MODEL_PATH.sig)")
    sign.add_argument("--password-env", metavar="VAR", help="environment variable holding the key's password")
    sign.set_defaults(handler=cmd_sign)

    verify = commands.add_parser("verify", help="verify a signed model (local path or models:/ URI)",
                                 description="Verify a local model against its signature, or a registry model against its signature, attestation and tags.")
    verify.add_argument("target", metavar="TARGET", help="file, directory, models:/NAME/VERSION or models:/NAME@ALIAS")
    verify.add_argument("--public-key", required=True, metavar="PUBLIC_KEY_PEM", help="the signer's EC public key, PEM")
    verify.add_argument("--signature", metavar="SIG", help="bundle path for a local TARGET (default: TARGET.sig)")
    verify.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ targets")
    json_option(verify)
    verify.set_defaults(handler=cmd_verify)

    scan_model = commands.add_parser("scan-model", help="find unsafe serialized content without loading it",
                                     description="Scan pickle, joblib, .npy, .skops and zip content for code execution on load.")
    scan_model.add_argument("path", metavar="PATH")
    json_option(scan_model)
    scan_model.set_defaults(handler=cmd_scan_model)

    pol = commands.add_parser("policy", help="evaluate Rego policies against an evidence document",
                              description="Evaluate the Rego packs in DIR against EVIDENCE_JSON; exit 0 allow, 1 deny.")
    pol.add_argument("evidence", metavar="EVIDENCE_JSON")
    pol.add_argument("--policy", metavar="DIR", help="directory of Rego packs (default: bundled)")
    json_option(pol)
    pol.set_defaults(handler=cmd_policy)
    return parser


def _quiet_libraries() -> None:
    from secure_pipeline import tracking

    tracking.quiet()
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m secure_pipeline`."""
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CheckFailedError as exc:
        _say(f"FAILED: {exc}")
        return exc.exit_code
    except SecurePipelineError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("error: interrupted; nothing was promoted")
        return 3
    except Exception as exc:  # a bug or an unexpected library failure: no traceback unless asked
        if os.environ.get("SECURE_PIPELINE_DEBUG"):
            traceback.print_exc()
        _say(f"error: unexpected failure ({type(exc).__name__}: {exc}); set SECURE_PIPELINE_DEBUG=1 for a traceback")
        return 3
