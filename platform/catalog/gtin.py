"""GTIN-8/12/13/14 (UPC, EAN) check-digit validation."""

from django.core.exceptions import ValidationError

GTIN_LENGTHS = (8, 12, 13, 14)


def gtin_check_digit(body: str) -> int:
    # GS1: weights 3,1,3,1… from the rightmost digit of the body.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def validate_gtin(value: str) -> None:
    if not value.isdigit() or len(value) not in GTIN_LENGTHS:
        raise ValidationError(
            "A GTIN/UPC has 8, 12, 13 or 14 digits.", code="invalid_gtin", params={"v": value}
        )
    if gtin_check_digit(value[:-1]) != int(value[-1]):
        raise ValidationError("The GTIN check digit is wrong.", code="bad_check_digit")
