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
        blocking = next((p for p in Path(out).parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise BadInputError(f"{out}: {blocking} is a file, not a directory; choose another path for --json")
        Path(out).parent.mkdir(parents=True, exist_ok=True)  # CI steps write reports into fresh folders
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
        packs=tuple(args.pack) if args.pack else None,
        waivers=_path(args.waivers),
    )
    _check_report_target(args)
    if options.demo not in (None, "clean", "poisoned"):
        raise BadInputError(f"--demo {options.demo}: unknown demo; choose clean or poisoned")
    if options.demo is not None and options.data is not None:
        raise BadInputError("--demo and --data exclude each other; pass --demo for the bundled data, or --data with --target")
    if options.target is not None and options.data is None and options.config is None:
        raise BadInputError("--target needs --data FILE (or a --config with data.path); without them the bundled demo runs")
    if options.data is not None and options.target is None and options.config is None:
        raise BadInputError("--data needs --target COLUMN (or a --config with data.target)")
    outcome = runner.run(options, progress=_progress)
    _write_json(outcome.to_json(), args.json)
    _write_report(outcome.evidence["policy"], args)
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
    from secure_pipeline import gate

    _say(gate.verdict(report, str(args.data)))
    return 0 if report["passed"] else 1


def cmd_sign(args: argparse.Namespace) -> int:
    from secure_pipeline import signing
    from secure_pipeline.signing import default_signature

    model = Path(args.model_path)
    out = Path(args.signature) if args.signature else default_signature(model)
    signed = signing.sign_model(model, out, _cli_signer(args))
    _say(f"signed {len(signed.files)} file(s) of {model}: {signed.digest}")
    _say(f"  signature: {out}")
    return 0


def _cli_signer(args: argparse.Namespace) -> Any:
    """The signer the `sign` options describe: key, key + certificate chain, keyless Sigstore or PKCS#11."""
    from secure_pipeline import signing

    chain = tuple(Path(p) for p in args.cert_chain or ())
    common = {"hash_algorithm": args.hash, "certificate": _path(args.certificate), "cert_chain": chain}
    if args.sigstore:
        if args.key or args.pkcs11_uri:
            raise BadInputError("sign: --sigstore signs keylessly; do not combine it with --key or --pkcs11-uri")
        token = os.environ.get(args.identity_token_env) if args.identity_token_env else None
        return signing.with_identity_token(signing.Signer(method="sigstore", identity_token=token, use_staging=args.staging, hash_algorithm=args.hash))
    if args.pkcs11_uri:
        signer = signing.Signer(method="pkcs11", pkcs11_uri=args.pkcs11_uri, module_paths=tuple(args.pkcs11_module or ()), **common)
        signing.check_pkcs11(signer)
        return signer
    if not args.key:
        raise BadInputError("sign: the --key PRIVATE_KEY_PEM argument is required (or --sigstore, or --pkcs11-uri); see `secure-pipeline sign --help`")
    if args.cert_chain and not args.certificate:
        raise BadInputError("sign: --cert-chain needs --certificate CERT.pem, the signing certificate for --key")
    method = "certificate" if args.certificate else "key"
    return signing.Signer(method=method, private_key=Path(args.key), password=signing.password_from_env(args.password_env), **common)


def cmd_verify(args: argparse.Namespace) -> int:
    from secure_pipeline import verification

    trust = {"cert_chain": args.cert_chain, "identity": args.identity, "issuer": args.issuer, "use_staging": args.staging}
    key = _path(args.public_key)
    try:
        if args.target.startswith("models:/"):
            verified = verification.verify_registered(args.target, key, tracking_uri=_optional(args.tracking_uri), **trust)
        else:
            verified = verification.verify_local(Path(args.target), key, _path(args.signature), **trust)
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

    _check_report_target(args)
    document = evidence.load(Path(args.evidence))
    decision = policy.evaluate(document, _path(args.policy), tuple(args.pack) if args.pack else None, _path(args.waivers))
    _write_json(decision.to_json(), args.json)
    _write_report(decision.to_json(), args)
    _say(f"decision: {'ALLOW' if decision.allow else 'DENY'} (policy {decision.policy_digest}; packs {', '.join(decision.packs)})")
    for violation in decision.violations:
        _say(f"  deny [{violation.rule}]: {violation.message}")
    for violation, waiver in decision.waived:
        _say(f"  waived [{violation.rule}]: {violation.message} (accepted by {waiver.owner} until {waiver.expires}: {waiver.reason})")
    for warning in decision.warnings:
        _say(f"  warn [{warning.rule}]: {warning.message}")
    for problem in decision.waiver_problems:
        _say(f"  waiver problem: {problem['problem']}")
    return 0 if decision.allow else 1


def _check_report_target(args: argparse.Namespace) -> None:
    """`--format` without `--output` writes to standard output, which `--json -` may already use."""
    if args.format and not args.output and args.json == "-":
        raise BadInputError("--format and --json - both write to standard output; give --output FILE for the report")


def _write_report(decision: dict[str, Any], args: argparse.Namespace) -> None:
    """The CI report of a decision (`--format`), to `--output` or standard output."""
    if not args.format:
        return
    from secure_pipeline import ci_report

    uri = getattr(args, "evidence", None) or "evidence.json"
    text = ci_report.render(decision, args.format, evidence_uri=Path(uri).as_posix())
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"{args.output}: cannot write the {args.format} report ({exc.strerror}); choose a writable path for --output") from exc


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (also used by the docs test)."""
    parser = _Parser(prog="secure-pipeline", description="Enforced, evidenced security gates for ML models on MLflow.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def report_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--format", choices=["text", "json", "sarif", "junit"], metavar="{text,json,sarif,junit}",
                         help="also write the policy decision as a CI report: text, json (the decision JSON), "
                              "sarif (SARIF 2.1.0 for code scanning) or junit (JUnit XML, one test case per rule)")
        sub.add_argument("--output", metavar="FILE", help="where --format writes (default: standard output)")

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
    run.add_argument("--pack", action="append", metavar="NAME",
                     help="policy pack to evaluate, repeatable: baseline, gdpr, hipaa, pci-dss or a pack of --policy "
                          "(default: policy.packs, else baseline, or every pack of a custom --policy)")
    run.add_argument("--waivers", metavar="FILE", help="waivers file (YAML/JSON): accepted risks with owner, reason and expiry")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    run.add_argument("--demo", metavar="{clean,poisoned}", help="run on the bundled demo data (the default, clean, when no data or config is given)")
    json_option(run)
    report_options(run)
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
    sign.add_argument("--key", metavar="PRIVATE_KEY_PEM", help="EC P-256/P-384/P-521 private key, PEM (the default signing method)")
    sign.add_argument("--signature", metavar="OUT", help="bundle path (default: MODEL_PATH.sig)")
    sign.add_argument("--password-env", metavar="VAR", help="environment variable holding the key's password")
    sign.add_argument("--certificate", metavar="CERT_PEM", help="X.509 signing certificate for --key (enterprise PKI); needs --cert-chain")
    sign.add_argument("--cert-chain", metavar="CA_PEM", action="append", help="issuing CA certificate(s), PEM; repeat for intermediates")
    sign.add_argument("--sigstore", action="store_true", help="keyless Sigstore signing with the ambient OIDC identity (CI: id-token: write)")
    sign.add_argument("--identity-token-env", metavar="VAR", help="environment variable holding an OIDC identity token for --sigstore")
    sign.add_argument("--staging", action="store_true", help="use Sigstore's staging instance (testing only)")
    sign.add_argument("--pkcs11-uri", metavar="URI", help="sign with a key in a PKCS#11 token (needs the secure-pipeline[pkcs11] extra)")
    sign.add_argument("--pkcs11-module", metavar="PATH", action="append", help="PKCS#11 module (.so) to search for --pkcs11-uri")
    sign.add_argument("--hash", choices=("sha256", "blake3"), default="sha256", help="per-file hash (default sha256; blake3 is faster on many cores)")
    sign.set_defaults(handler=cmd_sign)

    verify = commands.add_parser("verify", help="verify a signed model (local path or models:/ URI)",
                                 description="Verify a local model against its signature, or a registry model against its signature, attestation and tags.")
    verify.add_argument("target", metavar="TARGET", help="file, directory, models:/NAME/VERSION or models:/NAME@ALIAS")
    verify.add_argument("--public-key", metavar="PUBLIC_KEY_PEM", help="the signer's EC public key, PEM")
    verify.add_argument("--cert-chain", metavar="CA_PEM", action="append", help="trusted CA certificate(s), PEM, for certificate-signed models")
    verify.add_argument("--identity", metavar="IDENTITY", help="keyless: the signer identity the certificate must name (e-mail or workflow URI)")
    verify.add_argument("--issuer", metavar="URL", help="keyless: the OIDC issuer, e.g. https://token.actions.githubusercontent.com")
    verify.add_argument("--staging", action="store_true", help="keyless: Sigstore's staging instance (testing only)")
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
    pol.add_argument("--pack", action="append", metavar="NAME",
                     help="pack to evaluate, repeatable: baseline, gdpr, hipaa, pci-dss or a pack of --policy "
                          "(default: baseline, or every pack of a custom --policy)")
    pol.add_argument("--waivers", metavar="FILE", help="waivers file (YAML/JSON): accepted risks with owner, reason and expiry")
    json_option(pol)
    report_options(pol)
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
