"""``magsync demo``: the whole story against the built-in sandbox, in under a minute.

No network, no config: a seeded shop and an Emarsys account start on free loopback
ports, a config is written into a temporary directory, and each magsync command runs for
real (in this process, through the same CLI a user types), with a few words before and
after each step about what happened and why.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from magsync.model import OPTIN_FIELD
from magsync.sandbox.pair import SandboxPair

CUSTOMERS, SUBSCRIBERS, SEED = 200, 120, 42
KEY_CUSTOMER, KEY_SUBSCRIBER = 7001, 7002


class Demo:
    """One demo run; ``say`` prints the narration, ``magsync`` runs a CLI command."""

    def __init__(self, pair: SandboxPair, config: Path, say: Callable[[str], None],
                 run_cli: Callable[[list[str]], int]) -> None:
        self.pair, self.config, self.say, self.run_cli = pair, config, say, run_cli
        self.shop = pair.magento.shop
        self.failures: list[str] = []
        self.guest: Any = None
        self.leaver: Any = None
        self.registered = 0

    def magsync(self, *args: str, expect: int = 0) -> int:
        self.say(f"$ magsync {' '.join(args)}")
        code = self.run_cli(["--config", str(self.config), *args])
        if code != expect:
            self.failures.append(f"`magsync {' '.join(args)}` exited {code}, expected {expect}")
        return code

    def emarsys_contact(self, key_field: int, value: object) -> dict[str, str | None]:
        ids = self.pair.emarsys.find_contacts(key_field, str(value))
        return self.pair.emarsys.account.contact(ids[0]) if len(ids) == 1 else {}

    def list_size(self, name: str) -> int:
        return len(self.pair.emarsys.account.list_members(name))


def run_demo(say: Callable[[str], None], run_cli: Callable[[list[str]], int], *,
             sections: dict[str, Any] | None = None) -> int:
    """Run every step, each magsync command through ``run_cli`` (the CLI's own ``run``);
    0 when each did what the narration says. ``sections`` are merged into the demo's
    config (e.g. ``{"monitoring": {"textfile": ...}}``)."""
    extra = {"emarsys": {"requests_per_minute": 1000}, **(sections or {})}
    with tempfile.TemporaryDirectory(prefix="magsync-demo-") as tmp, \
            SandboxPair(CUSTOMERS, SUBSCRIBERS, seed=SEED, export_polls=0) as pair:
        config = pair.write_config(Path(tmp) / "magsync.yaml", Path(tmp) / "state.db",
                                   **extra)
        demo = Demo(pair, config, say, run_cli)
        say(f"magsync demo — a sandbox shop with {CUSTOMERS} customers and {SUBSCRIBERS} "
            f"newsletter subscribers (Magento at {pair.magento.url}) and an Emarsys account "
            f"(at {pair.emarsys.api_url}). Config: {config}\n")
        for step in (_check, _export, _changes, _realtime, _pull, _background, _status):
            step(demo)
            say("")
        if demo.failures:
            say("The demo did not go as described:")
            for f in demo.failures:
                say(f"  - {f}")
            return 1
        say("Done. Nothing was left running; the temporary directory is removed. Next: "
            "`magsync sandbox serve --write-config my.yaml` to try your own mapping.")
        return 0


def _check(d: Demo) -> None:
    d.say("1. `check` validates the config and reaches both APIs, changing nothing.")
    d.magsync("check")


def _export(d: Demo) -> None:
    first = d.shop.customers[1]
    d.pair.emarsys.seed_contact({3: first["email"], 1: first["firstname"], OPTIN_FIELD: 1})
    d.say("2. `export-initial` sends every customer and guest subscriber. Before it, Emarsys "
          f"already held a contact with {first['email']} (no Magento key): magsync adopts it "
          "instead of creating a duplicate.")
    d.magsync("export-initial")
    adopted = d.pair.emarsys.find_contacts(3, first["email"])
    d.say(f"   -> Emarsys contacts with that email: {len(adopted)} (adopted, not duplicated). "
          f"Lists: 'Magento customers' {d.list_size('Magento customers')}, "
          f"'Magento subscribers' {d.list_size('Magento subscribers')}.")
    if len(adopted) != 1:
        d.failures.append("the existing contact was duplicated")


def _changes(d: Demo) -> None:
    shop = d.shop
    # The edits are dated a second back: Magento's updated_at has whole seconds, and an
    # edit in the second the next run starts belongs to the run after it.
    real_clock = shop.now
    shop.now = lambda: real_clock() - timedelta(seconds=1)
    try:
        _edit_shop(d)
    finally:
        shop.now = real_clock


def _edit_shop(d: Demo) -> None:
    shop = d.shop
    shop.edit_customer(2, firstname="Renamed")
    shop.create_customer(email="new.customer@example.com", firstname="Nora", lastname="New")
    shop.change_email(3, "changed.address@example.com")
    d.guest = next(s for s in shop.subscribers.values()
                   if s.customer_id == 0 and s.subscriber_status == 1)
    d.registered = shop.register_guest(d.guest.subscriber_email,
                                       website_id=d.guest.website_id)
    d.leaver = next(s for s in shop.subscribers.values()
                    if s.customer_id and s.subscriber_status == 1)
    shop.unsubscribe(d.leaver.subscriber_id)
    d.pair.emarsys.inject_contact_error(KEY_CUSTOMER, 4, 2007, "Invalid value (demo)")
    shop.edit_customer(4, lastname="Rejected")
    d.say("3. Meanwhile in the shop: customer 2 renamed, a new customer, customer 3 changed "
          f"their email, guest subscriber {d.guest.subscriber_id} registered as customer "
          f"{d.registered}, customer {d.leaver.customer_id} unsubscribed from the newsletter, "
          "and customer 4 was edited — Emarsys will reject that one (a per-contact error).")


def _realtime(d: Demo) -> None:
    d.say("4. `sync-realtime` (cron runs it every minute) sends only what changed.")
    d.magsync("sync-realtime", expect=1)
    contact = d.emarsys_contact(KEY_SUBSCRIBER, d.guest.subscriber_id)
    d.say(f"   -> the registered guest kept their Emarsys contact, which now carries customer "
          f"id {contact.get(str(KEY_CUSTOMER))} too (one contact per person). Customer 4 "
          "went to the failsafe queue, so the run exited 1 (cron would mail you):")
    d.magsync("queue", "list")
    if contact.get(str(KEY_CUSTOMER)) != str(d.registered):
        d.failures.append("the registered guest's contact did not get the customer id")


def _pull(d: Demo) -> None:
    row = next(s for s in d.shop.subscribers.values() if s.customer_id > 4
               and s.subscriber_status == 1 and s.customer_id != d.leaver.customer_id)
    target = d.shop.customers[row.customer_id]
    ids = d.pair.emarsys.find_contacts(KEY_CUSTOMER, str(row.customer_id))
    d.pair.emarsys.ui_edit(ids[0], {OPTIN_FIELD: 2})
    d.say(f"5. In Emarsys, customer {row.customer_id} ({target['email']}) opts out (an "
          "unsubscribe link). `pull-optin` brings opt-in changes made in Emarsys back into "
          "Magento, and skips the changes magsync made itself.")
    d.magsync("pull-optin")
    subscribed = d.shop.is_subscribed(target["email"])
    d.say(f"   -> Magento now says customer {row.customer_id} is subscribed: {subscribed}.")
    if subscribed:
        d.failures.append("the Emarsys opt-out did not reach Magento")


def _background(d: Demo) -> None:
    d.pair.emarsys.account.clear_contact_errors()
    d.say("6. Emarsys accepts customer 4 again. `sync-background` (daily) re-reads every "
          "queued contact from Magento and sends it; the queue empties.")
    d.magsync("sync-background")
    d.magsync("queue", "list")


def _status(d: Demo) -> None:
    d.say("7. `status` shows the last runs, watermarks and the queue.")
    d.magsync("status")
