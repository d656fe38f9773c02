"""The identity rule the contact list and the delivery log share."""

from __future__ import annotations

import unicodedata

from mailaction.keys import campaign_key, contact_key, letter_identity


def test_an_address_id_is_trimmed_nfc_and_case_folded() -> None:
    assert contact_key("  Jö.Ann@Example.ORG ") == "jö.ann@example.org"
    assert contact_key(unicodedata.normalize("NFD", "Jö@example.org")) == "jö@example.org"


def test_an_id_that_is_no_address_keeps_its_case() -> None:
    assert contact_key(" Row-7 ") == "Row-7"
    assert campaign_key(unicodedata.normalize("NFD", " Spring Jö ")) == "Spring Jö"


def test_a_letter_identity_is_its_recipients_in_any_order_and_its_content() -> None:
    identity = letter_identity(["Ann@Example.org", "bob@example.net"], "f1")
    assert identity == letter_identity([" bob@example.net", "ann@example.org"], "f1")
    assert identity != letter_identity(["ann@example.org"], "f1")
    assert identity != letter_identity(["ann@example.org", "bob@example.net"], "f2")


def test_a_letter_identity_is_stable_across_releases() -> None:
    # Logs keep identities: a new release must compute the same value for the same letter.
    assert letter_identity(["Ann@Example.org", "bob@example.net"], "f1") == (
        "7895591cf1964946e6c121f7d48f2a66"
    )


def test_a_lone_surrogate_in_the_content_still_gives_an_identity() -> None:
    assert letter_identity(["ann@example.org"], "f\udc80") == "f846203ec55115936a2a3746e4fd18f7"
