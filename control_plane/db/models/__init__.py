"""ORM models, one module per domain; importing this package registers them all."""

from control_plane.db.models.api_key import ApiKey
from control_plane.db.models.audit import AuditEntry, AuditHead
from control_plane.db.models.backup import Backup, ServerBackupKey
from control_plane.db.models.base import Base
from control_plane.db.models.blueprint import Blueprint
from control_plane.db.models.compat import CompatCounter
from control_plane.db.models.listing import ListingVersion
from control_plane.db.models.location import Location
from control_plane.db.models.mail import (
    AlertPreferences,
    Invitation,
    KnownDevice,
    MailToken,
    OutboxMail,
)
from control_plane.db.models.mfa import RecoveryCode, SecondFactorFailure, TotpCredential
from control_plane.db.models.node import Allocation, Node
from control_plane.db.models.oauth import LoginChallenge, OAuthIdentity
from control_plane.db.models.passkey import PasskeyCredential
from control_plane.db.models.schedule import Schedule, ScheduleRun, ScheduleTask
from control_plane.db.models.server import Server, Subuser
from control_plane.db.models.session import Session
from control_plane.db.models.sftp_password import SftpPassword
from control_plane.db.models.signed_link import SignedLinkUse
from control_plane.db.models.ssh_key import SshKey
from control_plane.db.models.stats import ServerStatsBucket
from control_plane.db.models.user import User
from control_plane.db.models.webhook import Webhook, WebhookDelivery

__all__ = [
    "AlertPreferences",
    "Allocation",
    "ApiKey",
    "AuditEntry",
    "AuditHead",
    "Backup",
    "Base",
    "Blueprint",
    "CompatCounter",
    "Invitation",
    "KnownDevice",
    "ListingVersion",
    "Location",
    "LoginChallenge",
    "MailToken",
    "Node",
    "OAuthIdentity",
    "OutboxMail",
    "PasskeyCredential",
    "RecoveryCode",
    "Schedule",
    "ScheduleRun",
    "ScheduleTask",
    "SecondFactorFailure",
    "Server",
    "ServerBackupKey",
    "ServerStatsBucket",
    "Session",
    "SftpPassword",
    "SignedLinkUse",
    "SshKey",
    "Subuser",
    "TotpCredential",
    "User",
    "Webhook",
    "WebhookDelivery",
]
