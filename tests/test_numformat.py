"""Spreadsheet number formats give the text a person sees in the cell."""

from __future__ import annotations

import datetime

import pytest

from mailaction.numformat import format_number

DAY = (datetime.date(2024, 3, 5) - datetime.date(1899, 12, 30)).days  # Excel's serial number


@pytest.mark.parametrize(
    ("value", "code", "shown"),
    [
        (2134, "00000", "02134"),  # Zip Code
        (12345, "00000-0000", "00001-2345"),  # Zip Code + 4
        (123456789, "000-00-0000", "123-45-6789"),  # Social Security Number
        (5551234, "[<=9999999]###-####;(###) ###-####", "555-1234"),  # Phone Number
        (2125551234, "[<=9999999]###-####;(###) ###-####", "(212) 555-1234"),
        (0.25, "0%", "25%"),
        (0.25, "0 %", "25 %"),
        (0.1234, "0.00%", "12.34%"),
        (1234567.891, "#,##0.00", "1,234,567.89"),
        (1234567, "#,##0", "1,234,567"),
        (-1234.5, "#,##0.00", "-1,234.50"),
        (-1234.5, "#,##0.00;(#,##0.00)", "(1,234.50)"),
        (-5, "0.00;[Red]-0.00", "-5.00"),
        (0, '#,##0;-#,##0;"none"', "none"),
        (1234.5, "[$€-407] #,##0.00", "€ 1,234.50"),
        (1234.5, '#,##0.00 "€"', "1,234.50 €"),
        (1234567, "#,##0,", "1,235"),
        (1234567, '0.0,,"M"', "1.2M"),
        (2.5, "0.0", "2.5"),
        (3, "0.0", "3.0"),
        (0.5, "#.##", ".5"),
        (2.675, "0.00", "2.68"),  # halves round away from zero, as in Excel
        (12345.678, "0.00E+00", "1.23E+04"),
        (1.5, "# ?/?", "1 1/2"),
        (0.1 + 0.2, "General", "0.3"),
        (3.0, "General", "3"),
        (42, "@", "42"),
        (DAY, "dd/mm/yyyy", "05/03/2024"),
        (DAY, "DD/MM/YYYY", "05/03/2024"),
        (DAY, "d mmmm yyyy", "5 March 2024"),
        (DAY, "mmm d, yyyy", "Mar 5, 2024"),
        (DAY, "ddd dd mmm yy", "Tue 05 Mar 24"),
        (DAY, "[$-809]dd/mm/yyyy;@", "05/03/2024"),
        (DAY, "yyyy-mm-dd", "2024-03-05"),
        (DAY + 0.5, "dd/mm/yyyy hh:mm", "05/03/2024 12:00"),
        (0.75, "h:mm AM/PM", "6:00 PM"),
        (DAY + (13 * 3600 + 5 * 60 + 9) / 86400, "hh:mm:ss", "13:05:09"),
        (45 / 86400, "mm:ss", "00:45"),
        (1.5, "[h]:mm:ss", "36:00:00"),
    ],
)
def test_numbers_are_shown_as_the_cell_shows_them(value: float, code: str, shown: str) -> None:
    assert format_number(value, code) == shown


def test_the_1904_date_system_counts_from_1904() -> None:
    assert format_number(0, "yyyy-mm-dd", date1904=True) == "1904-01-01"


def test_a_date_beyond_the_calendar_is_shown_as_a_number() -> None:
    assert format_number(1e12, "dd/mm/yyyy") == "1000000000000"
