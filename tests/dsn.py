"""Bounce messages as real mail servers write them (Postfix, Exim, Microsoft 365, Gmail), an
out-of-office auto-reply and a person's reply, each returning one letter of a test campaign."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Returned:
    """The letter a notification is about."""

    recipient: str
    message_id: str
    subject: str
    sender: str = "campaign@example.org"

    def headers(self) -> str:
        return (
            f"From: Campaign <{self.sender}>\nTo: {self.recipient}\nSubject: {self.subject}\n"
            f"Date: Tue, 01 Dec 2026 09:30:00 +0000\nMessage-ID: {self.message_id}\nMIME-Version: 1.0\n"
            'Content-Type: text/plain; charset="utf-8"\n'
        )


def postfix_hard(letter: Returned) -> bytes:
    """Postfix's DSN: multipart/report, text, message/delivery-status, the returned message."""
    return f"""Return-Path: <>
Received: by mail.example.org (Postfix) id 4F1A2B3C4D; Tue,  1 Dec 2026 09:30:05 +0000 (UTC)
Date: Tue,  1 Dec 2026 09:30:05 +0000 (UTC)
From: MAILER-DAEMON@mail.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {letter.sender}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4F1A2B3C4D.1764581405/mail.example.org"
Message-Id: <20261201093005.4F1A2B3C4D@mail.example.org>

This is a MIME-encapsulated message.

--4F1A2B3C4D.1764581405/mail.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{letter.recipient}>: host mx.example.net[192.0.2.25] said: 550 5.1.1
    <{letter.recipient}>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--4F1A2B3C4D.1764581405/mail.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.org
X-Postfix-Queue-ID: 4F1A2B3C4D
X-Postfix-Sender: rfc822; {letter.sender}
Arrival-Date: Tue,  1 Dec 2026 09:30:01 +0000 (UTC)

Final-Recipient: rfc822; {letter.recipient}
Original-Recipient: rfc822;{letter.recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <{letter.recipient}>: Recipient address rejected:
    User unknown in virtual mailbox table

--4F1A2B3C4D.1764581405/mail.example.org
Content-Description: Undelivered Message
Content-Type: message/rfc822

{letter.headers()}
Dear supporter,

--4F1A2B3C4D.1764581405/mail.example.org--
""".replace("\n", "\r\n").encode()


def postfix_delayed(letter: Returned) -> bytes:
    """Postfix's delay warning: a DSN with Action: delayed and a 4.x.x status (a soft bounce)."""
    return f"""Return-Path: <>
Date: Tue,  1 Dec 2026 13:30:05 +0000 (UTC)
From: MAILER-DAEMON@mail.example.org (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: {letter.sender}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="7C2D1E0F9A.1764595805/mail.example.org"
Message-Id: <20261201133005.7C2D1E0F9A@mail.example.org>

--7C2D1E0F9A.1764595805/mail.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.org.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

<{letter.recipient}>: host mx.example.com[192.0.2.40] said: 452 4.2.2 Mailbox
    full (in reply to RCPT TO command)

--7C2D1E0F9A.1764595805/mail.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.org
X-Postfix-Queue-ID: 7C2D1E0F9A
Arrival-Date: Tue,  1 Dec 2026 09:30:01 +0000 (UTC)

Final-Recipient: rfc822; {letter.recipient}
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full
Will-Retry-Until: Sun,  6 Dec 2026 09:30:01 +0000 (UTC)

--7C2D1E0F9A.1764595805/mail.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{letter.headers()}
--7C2D1E0F9A.1764595805/mail.example.org--
""".replace("\n", "\r\n").encode()


def exim_hard(letter: Returned) -> bytes:
    """Exim's classic plain-text bounce: X-Failed-Recipients and the message copied below."""
    return f"""Return-path: <>
Received: from Debian-exim by relay.example.net with local (Exim 4.96)
	id 1tR7aB-0004Xy-2Q; Tue, 01 Dec 2026 09:30:07 +0000
X-Failed-Recipients: {letter.recipient}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: {letter.sender}
Content-Type: text/plain; charset=us-ascii
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1tR7aB-0004Xy-2Q@relay.example.net>
Date: Tue, 01 Dec 2026 09:30:07 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {letter.recipient}
    host mx.example.net [192.0.2.26]
    SMTP error from remote mail server after RCPT TO:<{letter.recipient}>:
    550 5.1.1 <{letter.recipient}>: no mailbox here by that name

------ This is a copy of the message, including all the headers. ------

Return-path: <{letter.sender}>
Received: from [192.0.2.10] by relay.example.net with esmtp (Exim 4.96)
	id 1tR7a9-0004Xt-1M; Tue, 01 Dec 2026 09:30:05 +0000
{letter.headers()}
Dear supporter,
""".replace("\n", "\r\n").encode()


def microsoft_hard(letter: Returned) -> bytes:
    """Exchange Online's non-delivery report: HTML and text, a DSN and the returned headers."""
    return f"""Received: from DM6PR11MB1234.namprd11.prod.outlook.com by DM6PR11MB5678.namprd11.prod.outlook.com
From: postmaster@outlook.example.com
To: {letter.sender}
Date: Tue, 1 Dec 2026 09:30:09 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="fd7a2e43-4d4b-4c5b-9d4a-1b2c3d4e5f60"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <6a3f0c1e-1b2d-4e5f-8a9b-0c1d2e3f4a5b@DM6PR11MB5678.namprd11.prod.outlook.com>
In-Reply-To: {letter.message_id}
References: {letter.message_id}
Subject: Undeliverable: {letter.subject}
Auto-Submitted: auto-replied
MIME-Version: 1.0

--fd7a2e43-4d4b-4c5b-9d4a-1b2c3d4e5f60
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"

--e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {letter.recipient} couldn't be delivered.
{letter.recipient.split("@")[0]} wasn't found at {letter.recipient.split("@")[1]}.

Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipien=
t not found by SMTP address lookup'

--e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your message to {letter.recipient} couldn't be delivered.</p></body></html>

--e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b--

--fd7a2e43-4d4b-4c5b-9d4a-1b2c3d4e5f60
Content-Type: message/delivery-status

Reporting-MTA: dns;DM6PR11MB5678.namprd11.prod.outlook.com
Received-From-MTA: dns;mail.example.org
Arrival-Date: Tue, 1 Dec 2026 09:30:08 +0000

Original-Recipient: rfc822;{letter.recipient}
Final-Recipient: rfc822;{letter.recipient}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

--fd7a2e43-4d4b-4c5b-9d4a-1b2c3d4e5f60
Content-Type: message/rfc822

{letter.headers()}
Dear supporter,

--fd7a2e43-4d4b-4c5b-9d4a-1b2c3d4e5f60--
""".replace("\n", "\r\n").encode()


def google_hard(letter: Returned) -> bytes:
    """Gmail's "Delivery Status Notification (Failure)" with the returned message's headers."""
    return f"""Delivered-To: {letter.sender}
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.example.com>
To: {letter.sender}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {letter.message_id}
In-Reply-To: {letter.message_id}
X-Failed-Recipients: {letter.recipient}
Message-ID: <674c2a1d.050a0220.3a7e4.0c3fSMTPIN_ADDED_BROKEN@mx.google.example.com>
Date: Tue, 01 Dec 2026 01:30:11 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000a1b2c3d4e5f6a7b8"; report-type=delivery-status

--000000000000a1b2c3d4e5f6a7b8
Content-Type: multipart/related; boundary="000000000000a1b2c3d4e5f6a7c9"

--000000000000a1b2c3d4e5f6a7c9
Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f6a7d0"

--000000000000a1b2c3d4e5f6a7d0
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {letter.recipient} because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

--000000000000a1b2c3d4e5f6a7d0--
--000000000000a1b2c3d4e5f6a7c9--
--000000000000a1b2c3d4e5f6a7b8
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.example.com
Received-From-MTA: dns; campaign@example.org
Arrival-Date: Tue, 01 Dec 2026 01:30:10 -0800 (PST)
X-Original-Message-ID: {letter.message_id}

Final-Recipient: rfc822; {letter.recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.example.com. (192.0.2.27, the server for the domain.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
 Please try double-checking the recipient's email address for typos or unnecessary spaces.
 https://support.google.example.com/mail/?p=NoSuchUser a1b2c3 - gsmtp
Last-Attempt-Date: Tue, 01 Dec 2026 01:30:11 -0800 (PST)

--000000000000a1b2c3d4e5f6a7b8
Content-Type: text/rfc822-headers

{letter.headers()}
--000000000000a1b2c3d4e5f6a7b8--
""".replace("\n", "\r\n").encode()


def out_of_office(letter: Returned) -> bytes:
    """An Exchange out-of-office answer (RFC 3834 marks): not a bounce."""
    return f"""From: {letter.recipient}
To: {letter.sender}
Subject: Automatic reply: {letter.subject}
Date: Tue, 1 Dec 2026 09:31:00 +0000
Message-ID: <b3c4d5e6f7a8@mail.example.net>
In-Reply-To: {letter.message_id}
References: {letter.message_id}
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
Content-Type: text/plain; charset="us-ascii"
MIME-Version: 1.0

I am out of the office until 14 December with no access to email.
For urgent matters, please contact the office.
""".replace("\n", "\r\n").encode()


def human_reply(letter: Returned) -> bytes:
    """A person answering the letter: neither a bounce nor an auto-reply."""
    return f"""From: Minister's Office <{letter.recipient}>
To: {letter.sender}
Subject: Re: {letter.subject}
Date: Tue, 1 Dec 2026 11:00:00 +0000
Message-ID: <c4d5e6f7a8b9@mail.example.net>
In-Reply-To: {letter.message_id}
Content-Type: text/plain; charset="us-ascii"
MIME-Version: 1.0

Thank you for your letter. The matter is being reviewed.
""".replace("\n", "\r\n").encode()
