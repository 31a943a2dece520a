"""Side by side: verified chats through the official TS SDK and through this SDK, on one devnet provider.

Usage::

    .venv/bin/python benchmarks/bench_vs_ts.py [--n 2000] [--warmup 256] [--concurrency 64] [--rounds 3]
        [--no-reference] [--profile [--profile-out PREFIX]]

One devnet, ONE chatbot provider (on-demand settlement only), two users with a ledger and a 150 OG
sub-account each, both acknowledged. The runs are sequential, on the same provider process:

- ``ts``: ``benchmarks/ts_sdk_chat.js`` drives the official TS SDK 0.9.0 (the one the conformance
  tests use, from the devnet's npm cache) with its own wallet: per chat ``getRequestHeaders``, a
  ``fetch`` POST to ``/chat/completions``, then ``processResponse(provider, chatID, usageJSON)``,
  which fetches the response signature and recovers its signer. A success is HTTP 200 and
  ``processResponse`` returning ``true``. As shipped, ``getRequestHeaders`` also runs the SDK's
  inline check-and-fund (a ``GET /unsettledfee`` to the provider and a ``getAccount`` call).
- ``ours``: ``broker.inference.chat(provider, messages)`` with ``broker.inference.verification =
  "required"``: every response's signature is fetched and checked (signer recovery, and the signed
  request and response hashes compared with the bytes sent and received) before ``chat`` returns.
  A success is a ``BOUND`` outcome.
- ``split`` (skipped with ``--no-reference``): our two requests apart, in one process with
  verification ``off``: first ``--n`` chats (``ours-chat``: one provider request each), then
  ``process_response(provider, chat_id)`` for each of them (``ours-signature``: the signature
  fetch and check alone; without the bodies the outcome is ``SIGNED``). Each verified chat is
  both, so the check should cost no more than the chat.

Each side first runs ``--warmup`` chats (connections, session token, service and account caches),
then ``--n`` chats from ``--concurrency`` workers; requests/s = successes / wall time of those n.
The sides alternate over ``--rounds`` rounds (each run a fresh process) so that a busy spell of a
shared machine hits all of them; the headline is the median of the per-round ratios ours / TS. CPU
time per call is reported too (the load process's, and the provider's, which runs in the main
process, both over the measured calls only): unlike requests/s it barely depends on what else the
machine is doing.
Our load runs in its own process (the provider keeps the main one). ``--profile`` prints a cProfile
of each of our measured phases (to stderr; ``--profile-out PREFIX`` also saves
``PREFIX-<mode>-<phase>.prof``).
Target: ours >= 5x the TS SDK's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.text import TextReceiveStream
from bench_e2e import MESSAGES, load_parser, print_profile, start_bench_provider, summarize

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "bench_vs_ts.py")
TS_SCRIPT = str(HERE / "ts_sdk_chat.js")
TARGET = 5.0
MARK = "OGMARK "
# the split run's measured phases and the sides they are reported as
SPLIT_SIDES = {"ours-chat": "load", "ours-signature": "signatures"}


async def _chats(send: Any, n: int, concurrency: int) -> dict[str, Any]:
    """Run ``send()`` ``n`` times from ``concurrency`` workers; successes, failures by kind, rate, latency."""
    failures: dict[str, int] = {}
    latencies: list[float] = []
    started = 0

    async def worker() -> None:
        nonlocal started
        while started < n:
            started += 1
            t0 = time.perf_counter()
            try:
                failure = await send()
            except Exception as exc:
                failure = type(exc).__name__
            if failure is None:
                latencies.append(time.perf_counter() - t0)
            else:
                failures[failure] = failures.get(failure, 0) + 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return summarize(latencies, len(latencies), failures, time.perf_counter() - t0)


def _mark(phase: str) -> None:
    """Tell the parent a phase starts (it reads the provider's CPU time at each mark)."""
    print(f"{MARK}{phase}", flush=True)


async def _measured(args: argparse.Namespace, phase: str, send: Any) -> dict[str, Any]:
    """One measured phase of ``args.n`` calls: its summary with the client's CPU time, profiled on request."""
    _mark(phase)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for the provider is not cost
        profiler.enable()
    cpu = time.process_time()
    summary = await _chats(send, args.n, args.concurrency)
    summary["cpu_s"] = round(time.process_time() - cpu, 3)
    if profiler is not None:
        profiler.disable()
        print(f"--- profile of our {args.mode} run, phase {phase} ---", file=sys.stderr)
        print_profile(profiler, top=40)
        if args.profile_out:
            profiler.dump_stats(f"{args.profile_out}-{args.mode}-{phase}.prof")
    return summary


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    """Our load-generator process, ``--mode`` required or split; prints a mark as each phase starts."""
    from og_inference_async import AsyncBroker
    from og_inference_async.types.inference import VerificationStatus

    setup = json.loads(args.load)
    phases: dict[str, Any] = {}
    async with AsyncBroker(setup["key"], network="hardhat", rpc_url=setup["rpc_url"]) as broker:
        provider = setup["provider"]
        chat_ids: list[str] = []

        def judged(outcome: Any, expected: VerificationStatus) -> str | None:
            if outcome is None or outcome.status is not expected:
                return f"verification {outcome.status.value if outcome else 'pending'}"
            return None

        async def verified_chat() -> str | None:
            result = await broker.inference.chat(provider, MESSAGES)
            return judged(result.verification.result, VerificationStatus.BOUND)

        async def plain_chat() -> str | None:
            result = await broker.inference.chat(provider, MESSAGES)
            if result.chat_id is not None:
                chat_ids.append(result.chat_id)
            return judged(result.verification.result, VerificationStatus.SKIPPED)

        async def signature_check() -> str | None:
            # the signature of one of the chats just made, judged as `chat` does (no bodies: SIGNED)
            outcome = await broker.inference.process_response(provider, chat_ids.pop())
            return judged(outcome, VerificationStatus.SIGNED)

        _mark("warmup")
        if args.mode == "required":
            broker.inference.verification = "required"
            phases["warmup"] = await _chats(verified_chat, args.warmup, args.concurrency)
            phases["load"] = await _measured(args, "load", verified_chat)
        else:
            broker.inference.verification = "off"
            phases["warmup"] = await _chats(plain_chat, args.warmup, args.concurrency)
            await _chats(signature_check, len(chat_ids), args.concurrency)
            phases["load"] = await _measured(args, "load", plain_chat)
            phases["signatures"] = await _measured(args, "signatures", signature_check)
        _mark("end")
    return {"phases": phases}


async def _run_marked(cmd: list[str], *, marks_on: str, env: dict[str, str] | None = None) -> Any:
    """Run ``cmd``; note this process's CPU time at each mark line it prints on ``marks_on``.

    Returns:
        ``(exit code, the other lines of that stream, {phase: CPU seconds this process spent in it})``.
    """
    lines: list[str] = []
    marks: list[tuple[str, float]] = []
    out = subprocess.PIPE if marks_on == "stdout" else subprocess.DEVNULL
    err = subprocess.PIPE if marks_on == "stderr" else None
    async with await anyio.open_process(cmd, env=env, stdout=out, stderr=err) as proc:
        stream = proc.stdout if marks_on == "stdout" else proc.stderr
        assert stream is not None
        pending = ""
        async for chunk in TextReceiveStream(stream):
            *complete, pending = (pending + chunk).split("\n")
            for line in complete:
                if line.startswith(MARK):
                    marks.append((line[len(MARK) :].strip(), time.process_time()))
                else:
                    lines.append(line)
        lines += [pending] if pending else []
        code = await proc.wait()
    spent = {phase: round(marks[i + 1][1] - at, 3) for i, (phase, at) in enumerate(marks[:-1])}
    return code, lines, spent


async def _run_ours(args: argparse.Namespace, setup: dict[str, Any], mode: str) -> dict[str, Any]:
    cmd = [sys.executable, SCRIPT, "--load", json.dumps(setup), "--mode", mode]
    cmd += ["--n", str(args.n), "--warmup", str(args.warmup), "--concurrency", str(args.concurrency)]
    if args.profile:
        cmd += ["--profile", *(["--profile-out", args.profile_out] if args.profile_out else [])]
    code, lines, provider_cpu = await _run_marked(cmd, marks_on="stdout")
    if code != 0:
        raise RuntimeError(f"our {mode} run failed (exit {code})")
    return {"phases": json.loads(lines[-1])["phases"], "provider_cpu_s": provider_cpu}


async def _run_ts(args: argparse.Namespace, config: dict[str, Any], node_modules: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "ts-report.json"
        env = {
            **os.environ,
            "NODE_PATH": str(node_modules),
            "OG_TS_BENCH": json.dumps({**config, "output": str(output)}),
        }
        code, lines, provider_cpu = await _run_marked(["node", TS_SCRIPT], marks_on="stderr", env=env)
        report: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    if code != 0 or "phases" not in report:
        detail = report.get("fatal") or "\n".join(lines)[-2000:]
        raise RuntimeError(f"the TS SDK run failed (exit {code}): {detail}")
    return {"phases": report["phases"], "provider_cpu_s": provider_cpu}


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from og_inference_async import AsyncBroker, og
    from og_inference_async.devnet import start_devnet

    async with start_devnet() as dn:
        chat = await start_bench_provider(dn)
        ts_user, our_user = dn.accounts[8], dn.accounts[9]
        for user in (ts_user, our_user):
            async with AsyncBroker(user.private_key, network=dn.network) as broker:
                await broker.ledger.add_ledger(og("200"))
                await broker.inference.acknowledge_provider_signer(chat.address, initial_amount=og("150"))
        sizes = {"n": args.n, "warmup": args.warmup, "concurrency": args.concurrency}
        ts_config = {
            "rpc_url": dn.rpc_url,
            "ledger": dn.ledger,
            "inference": dn.inference,
            "provider": chat.address,
            "key": ts_user.private_key,
            **sizes,
        }
        ours = {"key": our_user.private_key, "rpc_url": dn.rpc_url, "provider": chat.address}
        sides = {
            "ts": lambda: _run_ts(args, ts_config, dn.artifacts.node_modules),
            "ours": lambda: _run_ours(args, ours, "required"),
        }
        if args.reference:
            sides["split"] = lambda: _run_ours(args, ours, "split")
        runs: dict[str, list[dict[str, Any]]] = {"ts": [], "ours": [], "ours-chat": [], "ours-signature": []}
        for _ in range(args.rounds):  # the sides alternate, so a busy spell of the machine hits all of them
            for name, run in sides.items():
                result = await run()
                phases, provider_cpu = result["phases"], result["provider_cpu_s"]
                measured = (
                    {"ours-chat": "load", "ours-signature": "signatures"}
                    if name == "split"
                    else {name: "load"}
                )
                for side, phase in measured.items():
                    runs[side].append(
                        {
                            "warmup": phases["warmup"],
                            "load": phases[phase],
                            "provider_cpu_s": provider_cpu[phase],
                        }
                    )
    runs = {name: rounds for name, rounds in runs.items() if rounds}
    return {**sizes, "rounds": args.rounds, "runs": runs, "target": TARGET, **_judge(runs, args)}


def _judge(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """Per side: rates, failures and CPU per chat; then ours/TS per round, its median and the best rates'."""
    sides: dict[str, Any] = {}
    for name, rounds in runs.items():
        rates = [r["load"]["rps"] for r in rounds]
        sides[name] = {
            "rps": rates,
            "rps_median": statistics.median(rates),
            "rps_best": max(rates),
            "failures": [r["load"]["errors"] for r in rounds],
            "warmup_failures": [r["warmup"]["errors"] for r in rounds],
            "ok": [r["load"]["ok"] for r in rounds],
            "client_cpu_ms_per_chat": round(
                statistics.median(1000 * r["load"]["cpu_s"] / args.n for r in rounds), 3
            ),
            "provider_cpu_ms_per_chat": round(
                statistics.median(1000 * r["provider_cpu_s"] / args.n for r in rounds), 3
            ),
        }
    ratios = [o / t if t else 0.0 for o, t in zip(sides["ours"]["rps"], sides["ts"]["rps"])]
    judged: dict[str, Any] = {
        "sides": sides,
        "ratio_per_round": [round(r, 2) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 2),
        "ratio_of_best": round(sides["ours"]["rps_best"] / sides["ts"]["rps_best"], 2),
    }
    ts, ours = sides["ts"], sides["ours"]
    judged["cpu_ratio"] = {
        "client": round(ts["client_cpu_ms_per_chat"] / ours["client_cpu_ms_per_chat"], 2),
        "client_and_provider": round(
            (ts["client_cpu_ms_per_chat"] + ts["provider_cpu_ms_per_chat"])
            / (ours["client_cpu_ms_per_chat"] + ours["provider_cpu_ms_per_chat"]),
            2,
        ),
    }
    if "ours-signature" in sides:
        chat, signature = sides["ours-chat"], sides["ours-signature"]
        judged["signature_vs_chat_cpu"] = {
            "client": round(signature["client_cpu_ms_per_chat"] / chat["client_cpu_ms_per_chat"], 2),
            "provider": round(signature["provider_cpu_ms_per_chat"] / chat["provider_cpu_ms_per_chat"], 2),
        }
    return judged


def main() -> None:
    """Run the side-by-side benchmark (or, with ``--load``, our load-generator process)."""
    parser = load_parser(__doc__, rounds=3)
    parser.add_argument("--n", type=int, default=2000, help="measured calls per side and round")
    parser.add_argument("--warmup", type=int, default=256, help="warm-up chats per side and round")
    parser.add_argument("--no-reference", dest="reference", action="store_false", help="skip the split run")
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU time) our measured phases")
    parser.add_argument("--profile-out", help="with --profile: also write PREFIX-<mode>-<phase>.prof files")
    args = parser.parse_args()
    if args.load:
        print(json.dumps(anyio.run(_load, args)))
        return
    if shutil.which("node") is None:
        raise SystemExit("bench_vs_ts needs Node.js (node on PATH) to run the official TS SDK")
    report = anyio.run(_bench, args)
    labels = {
        "ts": "official TS SDK, processResponse",
        "ours": "ours, verification required",
        "ours-chat": "ours, the chat alone (off)",
        "ours-signature": "ours, the signature check alone",
    }
    print(
        f"{report['n']} calls per side and round (after {report['warmup']} warm-up), "
        f"concurrency {report['concurrency']}, {report['rounds']} rounds"
    )
    for name, side in report["sides"].items():
        print(
            f"{labels[name]:>34}: median {side['rps_median']:>7.1f} /s, best {side['rps_best']:>7.1f} "
            f"(rounds {side['rps']}); ok {side['ok']}; failures {side['failures']}, "
            f"warm-up {side['warmup_failures']}"
        )
        print(
            f"{'':>34}  CPU per call: client {side['client_cpu_ms_per_chat']:.3f} ms, "
            f"provider {side['provider_cpu_ms_per_chat']:.3f} ms (medians)"
        )
    verdict = "met" if report["ratio_median"] >= TARGET else "NOT met"
    print(
        f"ours (every signature checked) / TS SDK: median {report['ratio_median']}x "
        f"(rounds {report['ratio_per_round']}; best/best {report['ratio_of_best']}x); "
        f"target >= {TARGET}x: {verdict}"
    )
    print(f"CPU per chat, TS SDK / ours: {report['cpu_ratio']} (less sensitive to other load than req/s)")
    if "signature_vs_chat_cpu" in report:
        print(
            f"CPU of the signature check / CPU of the chat (target <= 1): {report['signature_vs_chat_cpu']}"
        )
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))


if __name__ == "__main__":
    main()
