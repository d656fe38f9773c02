"""mailaction: mail-merge and letter-writing campaigns with a crash-safe delivery log."""

from .campaign import Campaign
from .config import Config, load_config
from .delivery import CampaignResult, Hooks, SendOptions, SendPlan, send_campaign
from .deliverylog import DeliveryLog, State
from .errors import InvalidCampaign, MailactionError

__version__ = "0.1.0"

__all__ = [
    "Campaign",
    "CampaignResult",
    "Config",
    "DeliveryLog",
    "Hooks",
    "InvalidCampaign",
    "MailactionError",
    "SendOptions",
    "SendPlan",
    "State",
    "load_config",
    "send_campaign",
]
