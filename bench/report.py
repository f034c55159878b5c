"""Ratios, the targets of issues 4 and 18, and the Markdown / JSON / PNG outputs of the benchmark."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# Targets (issue 4), all at 2 workers, ratios to the reference measured in the same group (the
# blocks of one database and worker count, measured interleaved).
RATIO_TARGETS = {
    ("check_license", "rsa"): 0.5,
    ("check_license", "ed25519"): 0.5,
    ("activate_license", "ed25519"): 0.2,
    ("activate_license", "rsa"): 0.08,
}
# Issue 18: activations, deactivations and cold checks at least this share of the floor's
# throughput (bench/floor_app.py: the work the wire requires, same server software, workers and
# database, measured in the same group), and a cold RSA check at most this much server CPU.
FLOOR_LIMIT = 0.7
FLOOR_ENDPOINTS = (
    ("activate_license", "rsa"),
    ("activate_license", "ed25519"),
    ("deactivate_license", "-"),
    ("check_license_cold", "rsa"),
    ("check_license_cold", "ed25519"),
)
COLD_RSA_CPU_MS = 1.4
SCALE_LIMIT = 1.2  # 1M-license figures within 1.2x of the 1k-license ones
TAIL_LIMIT = 4.0  # p99 <= 4 x p50 at saturation
OFFLINE_LIMIT = 1.2  # an offline activation costs at most 1.2 x an online one (issue 19)
CONSUME_LIMIT = 1.2  # a consumption report costs at most 1.2 x an activation (issue 20)
FLOATING_LIMIT = 1.2  # a floating check-in within 1.2 x of a plain check (issue 20)
CONSOLE_P99_MS = 200.0  # a console page at most 200 ms, p99 (issue 22 asks p95), 4 connections
BUNDLE_SIZE = (
    2  # sub-licenses of the bench's bundle: its activation costs at most 2 x one (issue 21)
)
OPEN_LOOP_P99_MS = 50.0
TARGET_WORKERS = 2
LABELS = {
    ("check_license", "rsa"): "check RSA",
    ("check_license", "ed25519"): "check Ed25519",
    ("activate_license", "rsa"): "activate RSA",
    ("activate_license", "ed25519"): "activate Ed25519",
    ("deactivate_license", "-"): "deactivate",
    ("activate_offline", "rsa"): "offline activate RSA",
    ("activate_offline", "ed25519"): "offline activate Ed25519",
    ("add_consumption", "rsa"): "add_consumption RSA",
    ("check_license_floating", "rsa"): "floating check RSA",
    ("activate_bundle", "rsa"): "bundle activate RSA (2 products)",
    ("console_pages", "-"): "console pages (4 conn.)",
    ("check_license_cold", "rsa"): "check RSA, cold",
    ("check_license_cold", "ed25519"): "check Ed25519, cold",
    ("reference", "-"): "reference",
}


def size_label(licenses: int) -> str:
    if licenses >= 1_000_000 and licenses % 1_000_000 == 0:
        return f"{licenses // 1_000_000}M"
    if licenses >= 1000 and licenses % 1000 == 0:
        return f"{licenses // 1000}k"
    return str(licenses)


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each endpoint's throughput over the reference measured in the same round of its group
    (between the endpoint's own parts); over the mean of the group's references where no
    reference of that round was measured."""
    by_round: dict[tuple[str, Any], list[float]] = {}
    for r in results:
        if r["endpoint"] == "reference":
            by_round.setdefault((r["group"], r.get("round")), []).append(r["throughput"])
    by_group = _references(results)
    for r in results:
        rates = by_round.get((r["group"], r.get("round"))) or by_group.get(r["group"])
        ref = sum(rates) / len(rates) if rates else None
        r["reference_throughput"] = ref
        r["ratio"] = r["throughput"] / ref if ref else None
    floors = {
        (r["group"], r["endpoint"], r["signature"]): r["throughput"]
        for r in results
        if r.get("floor")
    }
    for r in results:
        floor = floors.get((r["group"], r["endpoint"], r["signature"]))
        if r.get("floor") or r["endpoint"] == "reference" or not floor:
            continue
        r["floor_throughput"] = floor
        r["floor_ratio"] = r["throughput"] / floor
    return results


def _references(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each group's reference rates, in the order measured."""
    rates: dict[str, list[float]] = {}
    for r in results:
        if r["endpoint"] == "reference":
            rates.setdefault(r["group"], []).append(r["throughput"])
    return rates


def _find(
    results: list[dict[str, Any]],
    db: str,
    licenses: int,
    workers: int,
    endpoint: str,
    signature: str,
) -> dict[str, Any] | None:
    for r in results:
        if (r["db"], r["licenses"], r["workers"], r["endpoint"], r["signature"]) == (
            db,
            licenses,
            workers,
            endpoint,
            signature,
        ):
            return r
    return None


def evaluate_targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    results = document["results"]
    targets: list[dict[str, Any]] = []
    dbs = sorted({r["db"] for r in results}, key=lambda d: d != "sqlite")
    sizes = sorted(
        {r["licenses"] for r in results if r["endpoint"] != "reference" and not r.get("floor")}
    )
    small, big = (sizes[0], sizes[-1]) if sizes else (None, None)

    def add(name: str, where: str, value: str, ok: bool | None, note: str = "") -> None:
        targets.append(
            {
                "target": name,
                "where": where,
                "value": value,
                "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
                "note": note,
            }
        )

    for db in dbs:
        for licenses in sizes:
            where = f"{db} {size_label(licenses)} {TARGET_WORKERS}w"
            for (endpoint, signature), limit in RATIO_TARGETS.items():
                r = _find(results, db, licenses, TARGET_WORKERS, endpoint, signature)
                name = f"{LABELS[(endpoint, signature)]} ratio >= {limit}"
                if r is None or r["ratio"] is None:
                    add(name, where, "not measured", None)
                else:
                    notes = [_validity(r), _signature_ceiling(document, r)]
                    add(
                        name,
                        where,
                        f"{r['ratio']:.3f}",
                        r["ratio"] >= limit,
                        "; ".join(n for n in notes if n),
                    )
            for endpoint, signature in FLOOR_ENDPOINTS:
                r = _find(results, db, licenses, TARGET_WORKERS, endpoint, signature)
                name = f"{LABELS[(endpoint, signature)]} / floor >= {FLOOR_LIMIT}"
                if r is None or r.get("floor_ratio") is None:
                    add(name, where, "not measured", None)
                    continue
                add(
                    name,
                    where,
                    f"{r['floor_ratio']:.3f} ({r['throughput']:.0f} / {r['floor_throughput']:.0f}"
                    " req/s)",
                    r["floor_ratio"] >= FLOOR_LIMIT,
                    _validity(r),
                )
            for signature in ("rsa", "ed25519"):
                offline = _find(
                    results, db, licenses, TARGET_WORKERS, "activate_offline", signature
                )
                online = _find(results, db, licenses, TARGET_WORKERS, "activate_license", signature)
                label = LABELS[("activate_offline", signature)]
                name = f"{label} within {OFFLINE_LIMIT}x of online"
                if offline is None or online is None or not offline["throughput"]:
                    add(name, where, "not measured", None)
                    continue
                slower = online["throughput"] / offline["throughput"]
                add(
                    name,
                    where,
                    f"{slower:.2f}x ({offline['throughput']:.0f} / {online['throughput']:.0f}"
                    " req/s)",
                    slower <= OFFLINE_LIMIT,
                    _validity(offline),
                )
            consume = _find(results, db, licenses, TARGET_WORKERS, "add_consumption", "rsa")
            online = _find(results, db, licenses, TARGET_WORKERS, "activate_license", "rsa")
            name = f"add_consumption RSA within {CONSUME_LIMIT}x of activate RSA"
            if consume is None or online is None or not consume["throughput"]:
                add(name, where, "not measured", None)
            else:
                slower = online["throughput"] / consume["throughput"]
                add(
                    name,
                    where,
                    f"{slower:.2f}x ({consume['throughput']:.0f} / {online['throughput']:.0f}"
                    " req/s)",
                    slower <= CONSUME_LIMIT,
                    _validity(consume),
                )
            bundle = _find(results, db, licenses, TARGET_WORKERS, "activate_bundle", "rsa")
            name = f"bundle activate RSA ({BUNDLE_SIZE} products) within {BUNDLE_SIZE}x of activate RSA"
            if bundle is None or online is None or not bundle["throughput"]:
                add(name, where, "not measured", None)
            else:
                slower = online["throughput"] / bundle["throughput"]
                add(
                    name,
                    where,
                    f"{slower:.2f}x ({bundle['throughput']:.0f} / {online['throughput']:.0f}"
                    " req/s)",
                    slower <= BUNDLE_SIZE,
                    _validity(bundle),
                )
            pages = _find(results, db, licenses, TARGET_WORKERS, "console_pages", "-")
            name = f"console pages p99 <= {CONSOLE_P99_MS:.0f} ms (4 conn.)"
            if pages is None or not pages["throughput"]:
                add(name, where, "not measured", None)
            else:
                add(
                    name,
                    where,
                    f"p99 {pages['p99_ms']:.1f} ms, p50 {pages['p50_ms']:.1f} ms "
                    f"({pages['throughput']:.0f} pages/s)",
                    pages["p99_ms"] <= CONSOLE_P99_MS,
                    _validity(pages),
                )
            floating = _find(results, db, licenses, TARGET_WORKERS, "check_license_floating", "rsa")
            plain = _find(results, db, licenses, TARGET_WORKERS, "check_license", "rsa")
            name = f"floating check RSA within {FLOATING_LIMIT}x of a plain check"
            if floating is None or plain is None or not floating["throughput"]:
                add(name, where, "not measured", None)
            else:
                slower = plain["throughput"] / floating["throughput"]
                add(
                    name,
                    where,
                    f"{slower:.2f}x ({floating['throughput']:.0f} / {plain['throughput']:.0f}"
                    " req/s)",
                    slower <= FLOATING_LIMIT,
                    _validity(floating),
                )
            cold = _find(results, db, licenses, TARGET_WORKERS, "check_license_cold", "rsa")
            name = f"cold RSA check server CPU <= {COLD_RSA_CPU_MS} ms"
            if cold is None or not cold["throughput"]:
                add(name, where, "not measured", None)
            else:
                add(
                    name,
                    where,
                    f"{_cpu_per_request(cold):.2f} ms",
                    _cpu_per_request(cold) <= COLD_RSA_CPU_MS,
                    _validity(cold),
                )
            for r in results:
                if (r["db"], r["licenses"], r["workers"]) != (db, licenses, TARGET_WORKERS):
                    continue
                if r["endpoint"] in ("reference", "check_license_cold", "console_pages"):
                    continue  # (console pages: their own latency bound, at 4 connections)
                label = LABELS[(r["endpoint"], r["signature"])]
                if not r["p50_ms"]:
                    add(
                        f"{label} p99 <= 4 x p50 (64 conn.)",
                        where,
                        "no answer in the run",
                        False,
                        _validity(r),
                    )
                    continue
                ok = r["p99_ms"] <= TAIL_LIMIT * r["p50_ms"]
                add(
                    f"{label} p99 <= 4 x p50 (64 conn.)",
                    where,
                    f"p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms "
                    f"({r['p99_ms'] / r['p50_ms']:.1f}x)",
                    ok,
                    _validity(r),
                )
            loops = [
                o
                for o in document.get("open_loop", [])
                if (o["db"], o["licenses"], o["workers"]) == (db, licenses, TARGET_WORKERS)
            ]
            for o in loops:
                p99 = o["latency_ms"]["p99"]
                kept_pace = o["ok"] >= 0.95 * o["scheduled"] and not o.get("errors")
                note = "" if kept_pace else f"{o['ok']} of {o['scheduled']} ok"
                add(
                    f"check open loop @ half peak p99 <= {OPEN_LOOP_P99_MS:.0f} ms",
                    where,
                    f"{p99:.1f} ms at {o['rate']:.0f} req/s",
                    p99 <= OPEN_LOOP_P99_MS and kept_pace,
                    note,
                )
            if not loops:
                add(
                    f"check open loop @ half peak p99 <= {OPEN_LOOP_P99_MS:.0f} ms",
                    where,
                    "not measured",
                    None,
                )
        if small is not None and big is not None and big != small:
            for endpoint, signature in [*RATIO_TARGETS, ("deactivate_license", "-")]:
                a = _find(results, db, small, TARGET_WORKERS, endpoint, signature)
                b = _find(results, db, big, TARGET_WORKERS, endpoint, signature)
                name = (
                    f"{LABELS[(endpoint, signature)]} at {size_label(big)} within "
                    f"{SCALE_LIMIT}x of {size_label(small)}"
                )
                where = f"{db} {TARGET_WORKERS}w"
                if not (a and b and a["ratio"] and b["ratio"]):
                    add(name, where, "not measured", None)
                    continue
                slowdown = a["ratio"] / b["ratio"]
                add(
                    name,
                    where,
                    f"ratio {a['ratio']:.3f} at {size_label(small)}, {b['ratio']:.3f} at "
                    f"{size_label(big)} ({size_label(small)}/{size_label(big)} = {slowdown:.2f}; "
                    f"raw {a['throughput']:.0f} -> {b['throughput']:.0f} req/s; server CPU "
                    f"{_cpu_per_request(a):.1f} -> {_cpu_per_request(b):.1f} ms/req)",
                    slowdown <= SCALE_LIMIT,
                )
        elif small is not None:
            add(
                f"1M within {SCALE_LIMIT}x of 1k",
                f"{db} {TARGET_WORKERS}w",
                "not measured (--quick)",
                None,
            )
    return targets


def _signature_ceiling(document: dict[str, Any], r: dict[str, Any]) -> str:
    """For an activation: the rate at which its two signatures alone would take every core of
    the machine (the run's own signing measurement), as a ratio to the group's reference."""
    cost = document["machine"].get("signature_cpu_ms", {}).get(f"{r['signature']}_ms")
    if r["endpoint"] != "activate_license" or not cost or not r.get("reference_throughput"):
        return ""
    ceiling = document["machine"]["cores"] * 1000 / (2 * cost)
    return (
        f"two {r['signature']} signatures ({cost:.2f} ms each) alone cap it at "
        f"{ceiling:.0f} req/s = ratio {ceiling / r['reference_throughput']:.3f}"
    )


def _cpu_per_request(r: dict[str, Any]) -> float:
    return 1000 * r["cpu"]["server_cores"] / r["throughput"] if r["throughput"] else float("nan")


def _validity(r: dict[str, Any]) -> str:
    notes = []
    if not r["requests"]:
        notes.append("no request completed within the run")
    if r["error_count"]:
        notes.append(f"{r['error_count']} errors")
    if r["cpu"]["other_cores"] > 0.25:
        notes.append(f"other processes used {r['cpu']['other_cores']:.2f} cores")
    return "; ".join(notes)


# -- outputs -----------------------------------------------------------------------------------


def _signing_line(machine: dict[str, Any]) -> str:
    cost = machine.get("signature_cpu_ms")
    if not cost:
        return ""
    return (
        f" One signature of a 2,500-byte answer costs {cost['rsa_ms']:.3f} ms of CPU with "
        f"RSA-2048 and {cost['ed25519_ms']:.3f} ms with Ed25519 (measured at the start of the "
        "run); a new activation makes two."
    )


def _postgres_line(settings: dict[str, Any]) -> str:
    pg = settings.get("postgresql_settings")
    if not pg:
        return ""
    return " PostgreSQL server settings: " + ", ".join(f"{k} = {v}" for k, v in pg.items()) + "."


def _reference_duration_text(settings: dict[str, Any]) -> str:
    seconds = settings.get("reference_duration_s")
    if seconds is None or seconds == settings["duration_s"]:
        return ""
    return f" ({seconds:g} s for the reference)"


def _repetitions(document: dict[str, Any]) -> list[str]:
    """With ``--repeat``: each endpoint's ratio in every repetition, per size, and the
    larger size's slowdown (small ratio / big ratio) repetition by repetition. The targets
    table is evaluated on the first repetition."""
    if document["settings"].get("repeat", 1) <= 1:
        return []
    series: dict[tuple[str, str, str], dict[int, list[float]]] = {}
    for r in document["results"]:
        if r["endpoint"] == "reference" or r.get("ratio") is None or r.get("floor"):
            continue
        key = (r["group"], r["endpoint"], r["signature"])
        series.setdefault(key, {}).setdefault(r["licenses"], []).append(r["ratio"])
    lines = [
        "",
        f"Repetitions ({document['settings']['repeat']}; the targets below are evaluated on "
        "the first): ratio in each repetition, and where the group has two sizes, the larger "
        "size's slowdown (small / big ratio) repetition by repetition, with its median.",
        "",
        "| group | endpoint | sig | ratios by size | slowdown by repetition | median slowdown |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for (group, endpoint, signature), by_size in series.items():
        sizes = sorted(by_size)
        ratios = "; ".join(
            f"{size_label(n)}: " + ", ".join(f"{x:.3f}" for x in by_size[n]) for n in sizes
        )
        slowdowns: list[float] = []
        if len(sizes) > 1:
            small, big = by_size[sizes[0]], by_size[sizes[-1]]
            slowdowns = [a / b for a, b in zip(small, big, strict=False) if b]
        lines.append(
            f"| {group} | {endpoint} | {signature} | {ratios} | "
            + (", ".join(f"{x:.2f}" for x in slowdowns) or "-")
            + " | "
            + (f"{statistics.median(slowdowns):.2f}" if slowdowns else "-")
            + " |"
        )
    return lines


def _slices_text(settings: dict[str, Any]) -> str:
    slices = settings.get("slices", 1)
    if slices <= 1:
        return ""
    return (
        f", each run measured in {slices} parts of {settings['duration_s'] / slices:.0f} s that "
        "alternate with the other blocks of its group and its reference (1k, 1M, ref, ref, 1M, "
        "1k) and are merged: counts and CPU add up, percentiles from the merged latency "
        "distributions"
    )


def markdown(document: dict[str, Any]) -> str:
    m = document["machine"]
    lines = [
        f"# Licensor benchmark ({document['mode']} run, {document['generated_at']})",
        "",
        f"Code: {document['source']['tree']} at {document['source']['commit'][:12]}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". Load average {m['loadavg_at_start']:.2f} at start, {m['loadavg_at_end']:.2f} at end."
        + _signing_line(m)
        + _postgres_line(document["settings"]),
        "",
        f"wrk, {document['settings']['connections']} connections, 1 thread, "
        f"{document['settings']['duration_s']:.0f} s per run"
        + _reference_duration_text(document["settings"])
        + " after "
        f"{document['settings']['warmup_s']:.0f} s of warm-up"
        + _slices_text(document["settings"])
        + "; ratio = throughput / reference throughput (`ref req/s`: same server software, "
        "same worker count), the reference measured in the same round of the same group, "
        "between the run's own parts. A group is one database at one worker count; "
        "its blocks (1k and 1M licenses at 2 workers) each have a server of their own, started "
        "together and measured interleaved, run by run, with the reference taking its turn in "
        "every round, so that the two sizes and the reference are compared on figures taken "
        "seconds apart. "
        "Reference: bare Starlette on the same uvicorn, JSON body of "
        f"{document['answer_sizes'].get('reference_bytes', '?')} bytes (a check answer: RSA "
        f"{document['answer_sizes'].get('check_rsa_bytes', '?')} B, Ed25519 "
        f"{document['answer_sizes'].get('check_ed25519_bytes', '?')} B). "
        "CPU columns: cores used during the run by the server's processes, PostgreSQL, wrk, and "
        "everything else on the machine (other engineers' jobs: results with a high `other` "
        "are disturbed); server CPU ms/req = server cores / throughput. `check_license`: the steady "
        "state, 1,000 activated devices checked again and again (answers served again from "
        "memory, as README 'How a check is answered' explains); `check_license_cold`: each "
        "request a device not checked before in the run (every answer read, made and signed; "
        "informative, no target).",
        "",
        "The floor (`<group> floor` rows, issue 18): bench/floor_app.py, a bare Starlette app on "
        "the same uvicorn, worker count and database (the group's smaller one), doing only the "
        "work the wire requires: the HMAC checked, one raw-driver transaction that locks the "
        "license row, counts the seat and inserts the device (or frees it), the same "
        "signatures, a body of the same size; `floor` = throughput / the floor's, same group.",
        "",
        "| block | endpoint | sig | req/s | ref req/s | ratio | floor | p50 ms | p99 ms "
        "| p99/p50 | errors | server CPU ms/req | server | pg | wrk | other |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: |",
    ]
    for r in _by_block(document["results"]):
        if r["endpoint"] == "reference" and r.get("round") is not None:
            continue  # in its rounds' `ref req/s`
        ref = r.get("reference_throughput")
        ratio = f"{r['ratio']:.3f}" if r.get("ratio") is not None else "-"
        floor = f"{r['floor_ratio']:.3f}" if r.get("floor_ratio") is not None else "-"
        tail = f"{r['p99_ms'] / r['p50_ms']:.1f}" if r["p50_ms"] else "-"
        c = r["cpu"]
        per = f"{1000 * c['server_cores'] / r['throughput']:.2f}" if r["throughput"] else "-"
        lines.append(
            f"| {r['block']} | {r['endpoint']} | {r['signature']} | {r['throughput']:.0f} | "
            f"{'-' if ref is None else f'{ref:.0f}'} | {ratio} | {floor} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {tail} | {r['error_count']} | "
            f"{per} | "
            f"{c['server_cores']:.2f} | {c['postgres_cores']:.2f} | {c['wrk_cores']:.2f} | "
            f"{c['other_cores']:.2f} |"
        )
    references = _references(document["results"])
    if references:
        lines += [
            "",
            "Reference runs (req/s, in the order measured): "
            + "; ".join(
                f"{group}: " + ", ".join(f"{rate:.0f}" for rate in rates)
                for group, rates in references.items()
            )
            + ".",
        ]
    lines += _repetitions(document)
    if document["open_loop"]:
        lines += [
            "",
            "Open loop (check_license, RSA, offered at a fixed rate = half the measured RSA "
            "check peak; generator: " + document["settings"]["open_loop_generator"] + "):",
            "",
            "| block | offered req/s | achieved req/s | ok / scheduled | unfinished | errors "
            "| p50 ms | p90 ms | p99 ms | max ms | send lag p99 ms | generator cores |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for o in document["open_loop"]:
            lat = o["latency_ms"]
            lag = o.get("send_lag_ms", {}).get("p99")
            cores = o["cpu"].get("generator_cores")
            lines.append(
                f"| {o['db']} {size_label(o['licenses'])} {o['workers']}w | {o['rate']:.0f} | "
                f"{o.get('achieved_rate', 0):.0f} | {o['ok']} / {o['scheduled']} | "
                f"{o.get('unfinished', '-')} | {o.get('errors', 0)} | "
                f"{lat.get('p50', 0):.2f} | {lat.get('p90', 0):.2f} | {lat.get('p99', 0):.2f} | "
                f"{lat['max']:.1f} | {'-' if lag is None else f'{lag:.2f}'} | "
                f"{'-' if cores is None else f'{cores:.2f}'} |"
            )
    lines += ["", "Seeding (bulk):", ""]
    for s in document["seeding"]:
        lines.append(
            f"- {s['db']}: {s['licenses']:,} licenses + {s['devices']:,} devices in "
            f"{s['seconds']:.1f} s"
        )
    lines += [
        "",
        "## Targets (issues 4 and 18; 2 workers)",
        "",
        "| status | target | where | value | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in document["targets"]:
        lines.append(
            f"| {t['status']} | {t['target']} | {t['where']} | {t['value']} | {t['note']} |"
        )
    if document["skipped"]:
        lines += ["", "Skipped: " + "; ".join(document["skipped"])]
    lines += ["", f"Total time: {document['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _block_order(results: list[dict[str, Any]]) -> list[str]:
    """Blocks in the order their groups ran, smaller size first within a group (the group's
    reference, licenses None, before both)."""
    groups = list(dict.fromkeys(r["group"] for r in results))
    first = {}
    for r in results:
        first.setdefault(r["block"], (groups.index(r["group"]), r["licenses"] or 0))
    return sorted(first, key=lambda block: first[block])


def _by_block(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by block, in measurement order within one."""
    order = _block_order(results)
    return sorted(results, key=lambda r: order.index(r["block"]))


def chart(document: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    results = [
        r
        for r in document["results"]
        if r["endpoint"] != "reference" and r["ratio"] is not None and not r.get("floor")
    ]
    if not results:
        return False
    groups = [k for k in LABELS if k != ("reference", "-")]
    blocks = _block_order(results)
    width = 0.8 / max(1, len(blocks))
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    colors = plt.get_cmap("tab10")
    for b_index, block in enumerate(blocks):
        xs, ys = [], []
        for g_index, (endpoint, signature) in enumerate(groups):
            for r in results:
                if (r["block"], r["endpoint"], r["signature"]) == (block, endpoint, signature):
                    xs.append(g_index - 0.4 + width * (b_index + 0.5))
                    ys.append(r["ratio"])
        bars = ax.bar(xs, ys, width * 0.92, label=block, color=colors(b_index % 10))
        for bar, value in zip(bars, ys, strict=True):
            ax.annotate(
                f"{value:.2f}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
                xytext=(0, 2),
                textcoords="offset points",
            )
    for g_index, key in enumerate(groups):
        limit = RATIO_TARGETS.get(key)
        if limit is not None:
            ax.hlines(
                limit,
                g_index - 0.42,
                g_index + 0.42,
                colors="black",
                linestyles="--",
                linewidth=1.2,
                label="target (2 workers)" if g_index == 0 else "_nolegend_",
            )
    ax.set_xticks(range(len(groups)), [LABELS[g] for g in groups])
    ax.set_ylabel("throughput / reference (same group)")
    top = max([r["ratio"] for r in results] + [0.55])
    ax.set_ylim(0, top * 1.25)
    ax.set_title(
        "Licensor throughput as a ratio of a bare Starlette endpoint "
        f"({document['settings']['connections']} connections, wrk)"
    )
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def floor_chart(document: dict[str, Any], path: Path) -> bool:
    """Activations, deactivations and cold checks as a ratio of the floor, per block."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    results = [r for r in document["results"] if r.get("floor_ratio") is not None]
    if not results:
        return False
    blocks = _block_order(results)
    width = 0.8 / max(1, len(blocks))
    fig, ax = plt.subplots(figsize=(12, 5), dpi=110)
    colors = plt.get_cmap("tab10")
    for b_index, block in enumerate(blocks):
        xs, ys = [], []
        for g_index, key in enumerate(FLOOR_ENDPOINTS):
            for r in results:
                if (r["block"], r["endpoint"], r["signature"]) == (block, *key):
                    xs.append(g_index - 0.4 + width * (b_index + 0.5))
                    ys.append(r["floor_ratio"])
        bars = ax.bar(xs, ys, width * 0.92, label=block, color=colors(b_index % 10))
        for bar, value in zip(bars, ys, strict=True):
            ax.annotate(
                f"{value:.2f}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.axhline(FLOOR_LIMIT, color="black", linestyle="--", linewidth=1.2, label="goal")
    ax.set_xticks(range(len(FLOOR_ENDPOINTS)), [LABELS[k] for k in FLOOR_ENDPOINTS])
    ax.set_ylabel("throughput / floor (same group)")
    ax.set_ylim(0, max([r["floor_ratio"] for r in results] + [1.0]) * 1.2)
    ax.set_title(
        "Licensor as a ratio of the floor: only the work the wire requires (bench/floor_app.py)"
    )
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_all(document: dict[str, Any], out: Path) -> None:
    text = markdown(document)
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    drew = chart(document, out / "ratios.png")
    floor_chart(document, out / "floor.png")
    print("\n" + text)
    for t in document["targets"]:
        print(
            f"{t['status']:<4}  {t['target']}  [{t['where']}]  {t['value']}"
            + (f"  ({t['note']})" if t["note"] else "")
        )
    print(
        f"\nbench: wrote {out / 'report.md'}, {out / 'results.json'}"
        + (f", {out / 'ratios.png'}" if drew else " (no chart: matplotlib missing)")
    )


if __name__ == "__main__":
    # python bench/report.py bench-results/results.json: report.md and ratios.png again, beside it
    import sys

    source = Path(sys.argv[1])
    saved = json.loads(source.read_text(encoding="utf-8"))
    (source.parent / "report.md").write_text(markdown(saved), encoding="utf-8")
    chart(saved, source.parent / "ratios.png")
    floor_chart(saved, source.parent / "floor.png")
