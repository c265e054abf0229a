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
        packs=tuple(p for arg in args.pack or () for p in arg.split(",") if p) or None,
        waivers=_path(args.waivers),
        experiment=_optional(args.experiment),
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
    checks = outcome.evidence["data"]["checks"]
    for check_name, check in checks.items():
        _say(f"  data gate {check_name}: {check['status']} — {check['summary']}")
    for warning in decision["warnings"]:
        if not any(check["summary"] and check["summary"] in warning["message"] for check in checks.values()):  # said above
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
    if decision.packages_without_rules:
        _say(f"  note: no deny or warn rule in package(s) {', '.join(decision.packages_without_rules)}")
    return 0 if decision.allow else 1


def _cli_trust(args: argparse.Namespace) -> Any:
    """The verifier's trust material from the trust options (`--public-key`, `--cert-chain` or `--identity/--issuer`)."""
    from secure_pipeline import verification

    return verification.make_trust(_path(args.public_key), cert_chain=args.cert_chain, identity=args.identity,
                                   issuer=args.issuer, use_staging=args.staging)


def cmd_audit(args: argparse.Namespace) -> int:
    from secure_pipeline.registry import audit

    _check_report_target(args)
    report = audit.audit(_cli_trust(args), args.model or (), all_versions=args.all_versions, tracking_uri=_optional(args.tracking_uri))
    _write_json(report.to_json(), args.json)
    lines = [finding.line() for finding in report.findings]
    if args.format in ("sarif", "junit"):
        from secure_pipeline import ci_report

        _write_output(ci_report.render(report.as_decision(), args.format, evidence_uri=report.tracking_uri), args)
    elif args.format:
        _write_output(json.dumps(report.to_json(), indent=2) + "\n" if args.format == "json" else "\n".join(lines) + "\n", args)
    for line in lines:
        _say(line)
    failed = report.failures
    if failed:
        _say(f"AUDIT FAILED: {len(failed)} of {len(report.findings)} failed verification: {', '.join(f.uri for f in failed)}")
        return 1
    _say(f"AUDIT PASSED: {len(report.findings)} verified in {report.tracking_uri}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from secure_pipeline.registry import serve

    def ready(verified: Any, url: str) -> None:
        _say(f"VERIFIED: {args.model_uri} (version {verified.version}, digest {verified.digest}): signature, attestation, scan and trusted types")
        _say(f"serving on {url} (GET /ping, POST /invocations); stop with SIGTERM or Ctrl-C")

    serve.serve(args.model_uri, _cli_trust(args), host=args.host, port=args.port, tracking_uri=_optional(args.tracking_uri), on_ready=ready)
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    from secure_pipeline.registry import guard

    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise BadInputError(f"guard: the environment variable {args.secret_env} holding the webhook secret is unset or empty; "
                            "set it (the same secret the MLflow webhook signs with) or name another with --secret-env")
    trust = _cli_trust(args)

    def log(entry: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(entry, default=str) + "\n")
        sys.stdout.flush()

    def ready(url: str) -> None:
        _say(f"guarding the registry's aliases: POST {url}/webhook, GET {url}/health; stop with SIGTERM or Ctrl-C")

    guard.run(trust, secret, host=args.host, port=args.port, register=args.register, webhook_url=_optional(args.webhook_url),
              tracking_uri=_optional(args.tracking_uri), log=log, on_ready=ready)
    _say("guard stopped")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from secure_pipeline.registry import monitor

    try:
        outcome = monitor.monitor(Path(args.batch), args.model, _cli_trust(args), target=_optional(args.target),
                                  tracking_uri=_optional(args.tracking_uri), policy_dir=_path(args.policy))
    except CheckFailedError as exc:  # the version or its profile did not verify: nothing was checked or logged
        _write_json({"schema": monitor.SCHEMA, "decision": "deny", "verified": False, "model": {"uri": args.model}, "reason": str(exc)}, args.json)
        raise
    report = outcome.report
    _write_json(outcome.to_json(), args.json)
    drift = report["drift"]
    _say(f"{args.model} (version {report['model']['version']}) verified; batch {args.batch}: {report['batch']['rows']} rows, "
         f"{len(drift['drifted_columns'])} of {drift['columns_tested']} tested columns drifted; monitoring run {outcome.run_id}")
    for violation in report["policy"]["violations"]:
        _say(f"  deny [{violation['rule']}]: {violation['message']}")
    for warning in report["policy"]["warnings"]:
        _say(f"  warn [{warning['rule']}]: {warning['message']}")
    _say("WITHIN POLICY" if outcome.allow else "OUTSIDE POLICY: the monitoring rules deny this batch")
    return 0 if outcome.allow else 1


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
    _write_output(ci_report.render(decision, args.format, evidence_uri=Path(uri).as_posix()), args)


def _write_output(text: str, args: argparse.Namespace) -> None:
    """A `--format` report, to `--output` or standard output."""
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
    from secure_pipeline import __version__

    parser = _Parser(prog="secure-pipeline", description="Enforced, evidenced security gates for ML models on MLflow.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def report_options(sub: argparse.ArgumentParser, what: str = "the policy decision", case: str = "rule") -> None:
        sub.add_argument("--format", choices=["text", "json", "sarif", "junit"], metavar="{text,json,sarif,junit}",
                         help=f"also write {what} as a CI report: text, json (the JSON report), "
                              f"sarif (SARIF 2.1.0 for code scanning) or junit (JUnit XML, one test case per {case})")
        sub.add_argument("--output", metavar="FILE", help="where --format writes (default: standard output)")

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", metavar="OUT", help="write the JSON report to OUT ('-' = standard output)")

    def trust_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--public-key", metavar="PUBLIC_KEY_PEM", help="the signer's EC public key, PEM")
        sub.add_argument("--cert-chain", metavar="CA_PEM", action="append", help="trusted CA certificate(s), PEM, for certificate-signed models")
        sub.add_argument("--identity", metavar="IDENTITY", help="keyless: the signer identity the certificate must name (e-mail or workflow URI)")
        sub.add_argument("--issuer", metavar="URL", help="keyless: the OIDC issuer, e.g. https://token.actions.githubusercontent.com")
        sub.add_argument("--staging", action="store_true", help="keyless: Sigstore's staging instance (testing only)")

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
                     help="policy pack to evaluate, repeatable or comma-separated: baseline, gdpr, hipaa, pci-dss or a pack of --policy "
                          "(default: policy.packs, else baseline, or every pack of a custom --policy)")
    run.add_argument("--waivers", metavar="FILE", help="waivers file (YAML/JSON): accepted risks with owner, reason and expiry")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    run.add_argument("--experiment", metavar="NAME", help="MLflow experiment to log the run in (default: tracking.experiment, else secure-pipeline)")
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
    trust_options(verify)
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

    aud = commands.add_parser("audit", help="re-verify every alias (or version) in the model registry",
                              description="Verify every alias (with --all-versions, every version) of the registered models exactly as "
                                          "`verify models:/...` does; exit 1 naming each failure, 3 when the registry is unreachable.")
    trust_options(aud)
    aud.add_argument("--model", action="append", metavar="NAME_OR_GLOB", help="registered model name or shell glob, repeatable (default: all)")
    aud.add_argument("--all-versions", action="store_true", help="verify every version, not only those an alias points to")
    aud.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    json_option(aud)
    report_options(aud, "the audit", "alias or version")
    aud.set_defaults(handler=cmd_audit)

    srv = commands.add_parser("serve", help="verify, scan and audit a registry model, then serve it with MLflow's scoring server",
                              description="Check MODEL_URI as load_verified does (signature, attestation, tags, scan, trusted types), then serve "
                                          "the verified copy with MLflow's scoring server (GET /ping, POST /invocations). Any failed check: "
                                          "exit 1 before listening.")
    srv.add_argument("model_uri", metavar="MODEL_URI", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    trust_options(srv)
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    srv.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    srv.set_defaults(handler=cmd_serve)

    grd = commands.add_parser("guard", help="receive MLflow webhooks and put back aliases moved to versions that do not verify",
                              description="Serve POST /webhook (HMAC-checked MLflow webhook deliveries) and GET /health. When an alias is set, "
                                          "or an aliased version's tags change, verify the version it points to; if that fails, move the alias "
                                          "back to the newest earlier version that verifies (or delete it), tag the refused version "
                                          "secure_pipeline.guard=reverted and log one JSON line to standard output. Runs until SIGTERM/SIGINT.")
    trust_options(grd)
    grd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    grd.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    grd.add_argument("--secret-env", default="SECURE_PIPELINE_WEBHOOK_SECRET", metavar="VAR",
                     help="environment variable holding the webhook secret (default SECURE_PIPELINE_WEBHOOK_SECRET)")
    grd.add_argument("--register", action="store_true", help="create or update the MLflow webhook for this guard before serving")
    grd.add_argument("--webhook-url", metavar="URL", help="with --register: the URL the tracking server posts to (default http://HOST:PORT/webhook)")
    grd.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    grd.set_defaults(handler=cmd_guard)

    mon = commands.add_parser("monitor", help="check a batch of new inputs (and labels) against the promoted version's attested training profile",
                              description="Verify MODEL_URI as load_verified does, check its training profile against the attestation, then "
                                          "check BATCH: schema, drift per column, poisoning signals and, with --target, the model's metrics "
                                          "against the attested ones. Logs a run in the secure-pipeline-monitoring experiment. Exit 0 within "
                                          "policy, 1 when the monitoring rules deny.")
    mon.add_argument("batch", metavar="BATCH", help="new inference inputs, CSV or Parquet")
    mon.add_argument("--model", required=True, metavar="MODEL_URI", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    trust_options(mon)
    mon.add_argument("--target", metavar="COLUMN", help="the label column, when the batch has labels (feedback data)")
    mon.add_argument("--policy", metavar="DIR", help="policy directory holding the monitoring pack (default: bundled)")
    mon.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    json_option(mon)
    mon.set_defaults(handler=cmd_monitor)
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
