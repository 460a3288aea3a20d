"""Options several commands share: durations, a key's policies, and who or what a key is for.

A user, an application or a project is named by its id, a user by email, the others by name
(``admin.names`` reads them, for every caller alike).
"""

from __future__ import annotations

import argparse
import re

from core.policies import PolicyError, RateLimit

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HELP = "a duration: a whole number and a unit, s m h d or w (90s, 15m, 1h, 7d, 2w)"


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds (0s included: see `lifetime`)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        if text.strip().startswith("-"):
            raise argparse.ArgumentTypeError(
                f"{text!r} is negative; a duration counts forward from now, like 30m, 1h or 7d"
            )
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h, 7d or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


# The longest lifetime: an expiry must stay a date every reader can show (year <= 9999); a
# hundred years is as good as never for a key, and says so plainly.
MAX_LIFETIME = 100 * 52 * 7 * 86400


def lifetime(text: str) -> float:
    """A key's lifetime: a positive duration. ``0s`` is refused rather than read as "no expiry"
    (which a key without --expires-in already has) or as "expired at once" (a key nobody could
    use): to stop a key now, revoke it."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} would expire the key as it is made; give a positive duration (1h, 7d), "
            "or revoke a key to stop it now"
        )
    if seconds > MAX_LIFETIME:
        raise argparse.ArgumentTypeError(
            f"{text!r} is past the longest lifetime a key may have (100 years, 5200w); "
            "for a key that never expires, leave --expires-in out"
        )
    return seconds


def lifetime_or_never(text: str) -> float | str:
    return "never" if text == "never" else lifetime(text)


# Options whose value may start with "-": argparse takes "--expires-in -5m" for two options and
# says "expected one argument"; joined as "--expires-in=-5m", the value is read and refused by
# its parser with a sentence.
VALUE_OPTIONS = ("--expires-in", "--grace", "--rate-limit", "--refill", "--credits")


def join_dashed_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else None
        dashed = following is not None and re.fullmatch(r"-\d[\w/.]*", following)
        if word in VALUE_OPTIONS and dashed:
            out.append(f"{word}={following}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out


def rate_limit(text: str) -> RateLimit:
    try:
        return RateLimit.parse(text)
    except PolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def bearer_options(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--user`` or ``--application``, by id, email or name."""
    bearer = parser.add_mutually_exclusive_group(required=required)
    bearer.add_argument("--user", metavar="USER", help="a user: their id or email")
    bearer.add_argument(
        "--application", metavar="APPLICATION", help="an application: its id or name"
    )


def project_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--project", metavar="PROJECT", help=f"{help}: its id or name")


def access_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "access_key", metavar="ACCESS_KEY", help="the key's access key (GWK..., not its secret)"
    )


def policy_options(parser: argparse.ArgumentParser, editing: bool = False) -> None:
    """A key's policies; when editing, a list given replaces the key's, and --no-... clears it."""
    again = " (repeat for more; replaces the key's list)" if editing else " (repeat for more)"
    limits = parser.add_mutually_exclusive_group() if editing else parser
    limits.add_argument(
        "--rate-limit",
        action="append",
        type=rate_limit,
        metavar="N/WINDOW",
        help="at most N requests in any WINDOW (100/60s, 10/1s, 1000/1h)" + again,
    )
    ips = parser.add_mutually_exclusive_group() if editing else parser
    ips.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        help="an address or network the key may be used from (10.0.0.0/8, 192.0.2.7)" + again,
    )
    held = parser.add_mutually_exclusive_group() if editing else parser
    held.add_argument(
        "--permission",
        action="append",
        metavar="RESOURCE:read|write",
        help=(
            "a permission of a restricted key (billing:read)" + again
            if editing
            else "make a restricted key (secret gws_rk_...) with this permission" + again
        ),
    )
    if editing:
        limits.add_argument("--no-rate-limits", action="store_true", help="remove its limits")
        ips.add_argument("--no-allowed-ips", action="store_true", help="usable from anywhere")
        held.add_argument(
            "--no-permissions", action="store_true", help="a restricted key that may do nothing"
        )
    else:
        parser.add_argument(
            "--restricted",
            action="store_true",
            help="a restricted key even without --permission (it may do nothing until given some)",
        )
