"""Outgoing mail (docs/email.md).

- ``templates.py``: the subject, plain-text and HTML bodies of each kind of mail, from the
  Jinja2 templates in ``templates/`` (HTML autoescaped: nothing a user typed is markup).
- ``outbox.py``: ``queue`` renders a mail and adds it to ``mail_outbox`` in the caller's
  transaction: it is sent only if the action commits, and survives a restart.
- ``smtp.py``: one SMTP delivery with aiosmtplib (STARTTLS, implicit TLS or plain).
- ``sender.py``: the background job (one replica at a time) that sends due mail, retrying
  with backoff, so a slow or dead SMTP server never slows a request.
- ``tokens.py``: single-use mailed tokens (verification, password reset), stored hashed.
"""
