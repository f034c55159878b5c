"""Outgoing mail over SMTP (stdlib ``smtplib``): the authorization codes of QLM-style activation.

Sent by the front after the transaction that created the code has committed, so a mail never
announces a code the database does not hold. The message comes from a ``string.Template`` file the
vendor can change (``LICENSOR_AUTHORIZATION_CODE_TEMPLATE``): a ``Subject: ...`` line, a blank
line, then the body. Placeholders: ``$code``, ``$email``, ``$product_name``, ``$product``,
``$company_name``, ``$minutes``, ``$expires_at``.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from string import Template

from licensor.core.errors import LicensorError
from licensor.settings import Settings

log = logging.getLogger("licensor.mail")

DEFAULT_AUTHORIZATION_CODE_TEMPLATE = """\
Subject: Your activation code for $product_name

Hello,

Someone (hopefully you) asked to activate $product_name on a computer with this e-mail address.

Your authorization code is: $code

It can be used once and expires in $minutes minutes ($expires_at UTC).
If you did not ask for it, you can ignore this message.

$company_name
"""


@dataclass(frozen=True, slots=True)
class AuthorizationCodeMail:
    to: str
    code: str
    product: str
    product_name: str
    company_name: str
    expires_at: datetime
    minutes: int


def render(template: str, values: dict[str, str]) -> tuple[str, str]:
    """Subject and body of a template; unknown ``$names`` are left as they are."""
    # Values never bring a line break: the Subject line stays one line whatever a name holds.
    flat = {name: " ".join(value.splitlines()) for name, value in values.items()}
    text = Template(template).safe_substitute(flat)
    first, _, rest = text.partition("\n")
    if first.lower().startswith("subject:"):
        subject = first.split(":", 1)[1].strip()
        body = rest[1:] if rest.startswith("\n") else rest
    else:
        subject, body = "Your activation code", text
    # A header never carries a line break (no header injection through product names).
    return " ".join(subject.split()), body


def authorization_code_message(settings: Settings, mail: AuthorizationCodeMail) -> EmailMessage:
    template = DEFAULT_AUTHORIZATION_CODE_TEMPLATE
    if settings.authorization_code_template is not None:
        try:
            template = settings.authorization_code_template.read_text(encoding="utf-8")
        except OSError as exc:
            log.error("mail.template_unreadable", extra={"error": type(exc).__name__})
            raise LicensorError("email_not_sent", "The e-mail template cannot be read") from None
    subject, body = render(
        template,
        {
            "code": mail.code,
            "email": mail.to,
            "product": mail.product,
            "product_name": mail.product_name,
            "company_name": mail.company_name,
            "minutes": str(mail.minutes),
            "expires_at": mail.expires_at.strftime("%Y-%m-%d %H:%M"),
        },
    )
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = mail.to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def _tls_context(settings: Settings) -> ssl.SSLContext:
    if settings.smtp_ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.smtp_ca_file))
    return ssl.create_default_context()


def send(settings: Settings, message: EmailMessage) -> None:
    """Deliver one message; ``email_not_sent`` (503) when SMTP is not configured or fails."""
    if not settings.smtp_host:
        raise LicensorError("email_not_sent", "Outgoing mail is not configured on this server")
    try:
        smtp: smtplib.SMTP
        if settings.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=settings.smtp_timeout_seconds,
                context=_tls_context(settings),
            )
        else:
            smtp = smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
            )
        with smtp:
            if settings.smtp_security == "starttls":
                smtp.starttls(context=_tls_context(settings))
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("mail.send_failed", extra={"error": type(exc).__name__})
        raise LicensorError("email_not_sent") from None
    log.info("mail.sent", extra={"kind": "authorization_code"})


def send_authorization_code(settings: Settings, mail: AuthorizationCodeMail) -> None:
    send(settings, authorization_code_message(settings, mail))
