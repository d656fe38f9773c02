"""What `validate` says about deliverability: the DKIM key and alignment, suppressed letters."""

from __future__ import annotations

from dataclasses import dataclass, field

from .campaign import Campaign
from .config import SMTPConfig
from .dkim import DKIMSigner, alignment_problem
from .suppression import recipient_filter


@dataclass
class DeliverabilityCheck:
    """Findings that do not stop a campaign but change what arrives."""

    signing: str = ""  # "example.org (selector s1)" when letters are DKIM-signed
    warnings: list[str] = field(default_factory=list)
    suppressed: int = 0  # valid letters the suppression list holds back


def sender_problem(account: SMTPConfig, sender: str) -> str | None:
    """Why an account that may send only as its own address cannot send a letter From ``sender``."""
    own = account.from_address
    if own is None or own.removeprefix("mailto:").casefold() == sender.casefold():
        return None
    return (
        f"account {account.label!r} may send only as {own}; letters From {sender} sent through it"
        " are refused or rewritten by its server (write From as that address, and the organiser"
        " in Reply-To)"
    )


def check_campaign(campaign: Campaign) -> DeliverabilityCheck:
    """Load the DKIM key (ConfigError when it cannot be used), check that each From domain aligns
    with it and that each account bound to one From address (``from``) can send each letter,
    and count the letters whose recipients are on the suppression list.

    Reads the letters once more only when there is a key or a suppression list to check.
    """
    settings = campaign.config.dkim
    check = DeliverabilityCheck()
    if settings.enabled:
        DKIMSigner(settings)
        check.signing = f"{settings.domain} (selector {settings.selector})"
    held = recipient_filter(campaign.config.campaign, proof=False)
    bound = [account for account in campaign.config.sending_accounts if account.from_address]
    if not settings.enabled and not held and not bound:
        return check
    misaligned: dict[str, list[int]] = {}
    for letter in campaign.letters():
        check.suppressed += held(letter.recipients)
        problem = alignment_problem(settings, letter.sender)
        if problem is not None:
            misaligned.setdefault(problem, []).append(letter.row)
        for account in bound:
            problem = sender_problem(account, letter.sender)
            if problem is not None:
                misaligned.setdefault(problem, []).append(letter.row)
    for problem, rows in misaligned.items():
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        check.warnings.append(f"{campaign.template.path.name} (From), rows {shown}: {problem}")
    return check
