"""What magsync's HTTP layer costs in CPU per request, apart from the JSON work.

    python bench/http_cost.py [--customers N] [--rounds R] [--json]

The Python floor (``shared/bench/floor.py``) decodes pages and encodes upsert bodies but
sends nothing; magsync must. This measures, in one thread of this process (the
sandbox's two simulators run in processes of their own, with no latency), the CPU time
(``time.thread_time``) of:

- ``magento_page``: one ``GET /V1/customers/search`` page through ``MagentoClient``
  (OAuth 1.0a signing, ``requests``, the reply read and decoded), keyset-paged through
  the whole shop with the export's ``fields`` filter and ``page_size``;
- ``emarsys_upsert``: one ``PUT /contact/`` of ``--batch`` new contacts through
  ``upsert_all`` (encoded, sent, the reply decoded and checked);
- ``emarsys_getdata``: one ``POST /contact/getdata`` of ``--batch`` emails
  through ``get_data``;

and, for each, the JSON work alone (``orjson`` decoding the same reply, encoding the same
body), which the floor also does. The difference is the transport: what any run that
talks HTTP pays on top of the floor. With the export's request mix (``--pages-per-1000``
and ``--emarsys-per-1000``, defaults from ``python bench/export.py``: 3.29 Magento requests
and 2.07 Emarsys requests per 1,000 contacts) it prints that cost per contact.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from common import Sandboxes, bench_main, tune_config

from magsync.config import load_config
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import get_data, upsert_all
from magsync.magento.client import MagentoClient
from magsync.magento.customers import IdRange, read_range
from magsync.mapping import customer_fields_filter

EMAIL_FIELD = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CPU of magsync's HTTP layer per request.")
    p.add_argument("--customers", type=int, default=20000, help="customers (default 20000)")
    p.add_argument("--page-size", type=int, default=300, help="magento.page_size (default 300)")
    p.add_argument("--batch", type=int, default=1000,
                   help="contacts an upsert, keys a getdata (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--pages-per-1000", type=float, default=3.29,
                   help="Magento pages per 1,000 exported contacts (default 3.29)")
    p.add_argument("--emarsys-per-1000", type=float, default=2.07,
                   help="Emarsys requests per 1,000 exported contacts (default 2.07)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Thread CPU seconds of ``fn()``, and what it returned."""
    start = time.thread_time()
    out = fn()
    return time.thread_time() - start, out


def json_only(reply: Any) -> float:
    """CPU of decoding ``reply`` once more from its bytes (what the floor's decode does)."""
    raw = orjson.dumps(reply)
    return cpu(lambda: orjson.loads(raw))[0]


def magento_pages(client: MagentoClient, fields: str) -> tuple[list[float], list[float]]:
    """Per page: the whole request's CPU, and decoding its items alone."""
    total: list[float] = []
    decode: list[float] = []
    pages = read_range(client, IdRange(0, 0), fields=fields)
    while True:
        spent, page = cpu(lambda: next(pages, None))
        if page is None:
            return total, decode
        total.append(spent)
        decode.append(json_only({"items": page.items}))


def emarsys_requests(client: EmarsysClient, key_field: int, batch: int, rnd: int,
                     batches: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per upsert and per getdata: the whole request's CPU, and the JSON work alone."""
    out: dict[str, tuple[list[float], list[float]]] = {"upsert": ([], []), "getdata": ([], [])}
    fields = [key_field, 31, EMAIL_FIELD]
    for b in range(batches):
        contacts = [{str(key_field): f"http-cost-{rnd}-{b}-{i}", "1": "Jürgen", "2": "Müller",
                     str(EMAIL_FIELD): f"r{rnd}b{b}i{i}@example.com", "11": "München",
                     "4": "1980-05-12", "31": 1} for i in range(batch)]
        envelope = {"key_id": str(key_field), "contacts": contacts}
        spent, result = cpu(functools.partial(_upsert, client, key_field, contacts))
        out["upsert"][0].append(spent)
        out["upsert"][1].append(cpu(functools.partial(orjson.dumps, envelope))[0]
                                + json_only({"ids": result.ids}))
        emails = [c[str(EMAIL_FIELD)] for c in contacts]
        spent, found = cpu(functools.partial(get_data, client, EMAIL_FIELD, emails, fields))
        body = {"keyId": str(EMAIL_FIELD), "keyValues": emails, "fields": fields}
        out["getdata"][0].append(spent)
        out["getdata"][1].append(cpu(functools.partial(orjson.dumps, body))[0]
                                 + json_only({"result": found.result}))
    return out


def _upsert(client: EmarsysClient, key_field: int, contacts: list[dict[str, Any]]) -> Any:
    [(_batch, result)] = upsert_all(client, key_field, contacts)
    return result


def micro(values: list[float]) -> float:
    return round(statistics.median(values) * 1e6, 1)


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    config = workdir / "bench.yaml"
    with Sandboxes(customers=args.customers, subscribers=args.customers // 5,
                   config_path=workdir / "sandbox.yaml"):
        tune_config(workdir / "sandbox.yaml", config, workdir / "state.db",
                    {"magento": {"page_size": args.page_size},
                     "emarsys": {"requests_per_minute": 100000}})
        cfg = load_config(config)
        fields = customer_fields_filter(f.path for f in cfg.contacts.customers.fields)
        magento = MagentoClient.from_config(cfg.magento)
        emarsys = EmarsysClient.from_config(cfg.emarsys)
        key_field = emarsys.call("GET", "/field")  # warm the connection
        key_field = next(int(f["id"]) for f in key_field
                         if f.get("name") == cfg.emarsys.key_fields.customer_id)
        rounds = []
        for rnd in range(args.rounds):
            page_total, page_json = magento_pages(magento, fields)
            em = emarsys_requests(emarsys, key_field, args.batch, rnd, batches=5)
            rounds.append({
                "magento_page_us": micro(page_total), "magento_page_json_us": micro(page_json),
                "emarsys_upsert_us": micro(em["upsert"][0]),
                "emarsys_upsert_json_us": micro(em["upsert"][1]),
                "emarsys_getdata_us": micro(em["getdata"][0]),
                "emarsys_getdata_json_us": micro(em["getdata"][1]),
                "pages": len(page_total),
            })
        magento.close()
        emarsys.close()
    for r in rounds:
        page = r["magento_page_us"] - r["magento_page_json_us"]
        emarsys_request = statistics.mean(
            [r["emarsys_upsert_us"] - r["emarsys_upsert_json_us"],
             r["emarsys_getdata_us"] - r["emarsys_getdata_json_us"]])
        r["transport_us_per_contact"] = round(
            (page * args.pages_per_1000 + emarsys_request * args.emarsys_per_1000) / 1000, 2)
    return {"customers": args.customers, "page_size": args.page_size, "batch": args.batch,
            "pages_per_1000": args.pages_per_1000,
            "emarsys_per_1000": args.emarsys_per_1000, "rounds": rounds}


def render_text(f: dict[str, Any]) -> list[str]:
    def spread(name: str) -> str:
        values = sorted(r[name] for r in f["rounds"])
        return f"{values[0]:9.1f} {statistics.median(values):9.1f} {values[-1]:9.1f}"

    return [
        f"{f['customers']} customers, pages of {f['page_size']}, batches of {f['batch']}; "
        f"{len(f['rounds'])} rounds: min / median / max",
        f"  Magento page, µs CPU             {spread('magento_page_us')}",
        f"    of which JSON                  {spread('magento_page_json_us')}",
        f"  Emarsys upsert, µs CPU           {spread('emarsys_upsert_us')}",
        f"    of which JSON                  {spread('emarsys_upsert_json_us')}",
        f"  Emarsys getdata, µs CPU          {spread('emarsys_getdata_us')}",
        f"    of which JSON                  {spread('emarsys_getdata_json_us')}",
        f"  transport per exported contact   {spread('transport_us_per_contact')}  µs "
        f"({f['pages_per_1000']} pages and {f['emarsys_per_1000']} Emarsys requests "
        f"per 1,000)",
    ]


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench/http_cost.py", parse_args(argv), run_benchmark, render_text)


if __name__ == "__main__":
    sys.exit(main())
