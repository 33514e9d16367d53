"""Webhooks: events in the panel, signed and sent to URLs users choose (docs/webhooks.md).

catalogue.py   the event types a webhook subscribes to, and the bodies sent (Standard
               Webhooks JSON, or Discord embeds)
signing.py     ``whsec_`` secrets and the ``webhook-id``/``-timestamp``/``-signature``
               headers of the Standard Webhooks spec
outbox.py      the domain-event subscriber: one ``webhook_deliveries`` row per matching
               webhook, in the transaction that records the event; test events
manage.py      webhooks of an account, a server or the panel: create, change, remove
guard.py       the SSRF policy for webhook URLs (shared.ssrf), at save and at each attempt
dispatcher.py  the background sender: claims due rows (SKIP LOCKED on PostgreSQL, so
               replicas share the work), sends them with bounded concurrency and a time
               limit, retries with exponential backoff and jitter, disables a webhook
               whose deliveries failed for the whole retry window
"""
