"""Storefront feedback for A/B tests: variant assignment, validated events, a durable append log.

The service answers each user from the variant `assign_variant` gives it (a stable hash of salt
and user id, never Python's ``hash()``, so every worker, process and restart agrees), and
appends the storefront's events with that variant to a folder of JSON-lines files, one per
receiving day (``events-YYYYMMDD.jsonl``, UTC). `experiments.ab` reads the folder back with
`load_feedback` to compare conversion per variant.

Events follow the data contract of `features.schema` and are checked by the same code as store
files (`features.load.validate_tables`), except the referential checks: feedback may name users
and items the last training run did not know. A batch is valid as a whole or rejected as a whole
(`FeedbackValidationError` names row, field and value). `append_feedback_events` writes a batch
with one ``write`` under an exclusive ``flock`` (several server workers may append to the same
file), then ``fsync``; a crash can at worst leave a torn last line, which the reader reports
with its file and line number and sets aside, and the next append starts on a fresh line.

Record fields: the event columns of `features.schema` (``ts`` naive UTC ISO 8601), plus
``request_id`` (optional, from the storefront), ``variant`` (``champion`` or ``challenger``,
assigned by the server) and ``received_at`` (server time, naive UTC); records appended through
`features.idempotency.FeedbackLog` also carry ``event_key``, and `load_feedback` keeps only the
first record of a key, so a retried delivery (even one without ``ts``, which the server stamps
anew) is counted once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import schema as s
from features.errors import InvalidInputError, RebuyError, SchemaError
from features.load import TABLE, validate_tables

logger = logging.getLogger(__name__)

# --- columns and values (feedback records add these to the event columns) -------------------------
REQUEST_ID = "request_id"
VARIANT = "variant"
RECEIVED_AT = "received_at"
EVENT_KEY = "event_key"
"""Optional record field: the idempotency key of an event sent with a ``request_id``
(`features.idempotency.event_keys`); the reader keeps the first record of each key."""
LINE = "line"  # the raw text of a rejected line
CHAMPION_VARIANT = "champion"
CHALLENGER_VARIANT = "challenger"
VARIANTS: tuple[str, ...] = (CHAMPION_VARIANT, CHALLENGER_VARIANT)
FEEDBACK_COLUMNS: tuple[str, ...] = (*s.EVENT_COLUMNS, REQUEST_ID, VARIANT, RECEIVED_AT)
REJECTED_COLUMNS: tuple[str, ...] = (s.SOURCE_FILE, s.ROW_NUMBER, s.REASON_CODE, s.REASON, LINE)

FILE_PREFIX = "events-"
FILE_SUFFIX = ".jsonl"
DEFAULT_SALT = "rebuy-ab"

# the field a contract failure is about, by the reason code of `features.load`
_CODE_FIELDS: dict[str, str | None] = {
    "missing_user_id": s.USER_ID,
    "invalid_event_type": s.EVENT_TYPE,
    "invalid_ts": s.TS,
    "future_ts": s.TS,  # later than now plus the allowed clock skew
    "ts_out_of_range": s.TS,
    "before_signup": s.TS,  # only for ts before the stand-in signup date (1900)
    "missing_item_id": s.ITEM_ID,
    "invalid_quantity": s.QUANTITY,
    "invalid_price": s.PRICE,
    "missing_order_id": s.ORDER_ID,
    "duplicate_event": None,
}
# feedback may name users and items unknown to the store snapshot: these stand in for the tables
_ANY_CATEGORY = "(feedback)"
_EARLIEST_SIGNUP = "1900-01-01"
_PLACEHOLDER_ID = "(none)"


# --- variant assignment ---------------------------------------------------------------------------


def variant_bucket(user_id: str, *, salt: str) -> float:
    """A user's position in [0, 1): the first 8 bytes of ``blake2b(salt, user_id)`` as a fraction.

    The same on every machine, process and Python version (unlike ``hash()``); a new salt
    reshuffles every user, which starts a fresh test.
    """
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_variant(user_id: str, *, share: float, salt: str = DEFAULT_SALT) -> str:
    """``"challenger"`` for the users whose `variant_bucket` falls below `share`, else ``"champion"``.

    Parameters
    ----------
    user_id
        External user id.
    share
        Fraction of users in the challenger variant, in [0, 1]; 0 sends everyone to the champion.
    salt
        Names the test; the same salt always gives the same assignment.

    Raises
    ------
    InvalidInputError
        If `share` is outside [0, 1].
    """
    if not 0.0 <= share <= 1.0:
        raise InvalidInputError(f"share must be in [0, 1], got {share!r}")
    if share > 0.0 and variant_bucket(user_id, salt=salt) < share:
        return CHALLENGER_VARIANT
    return CHAMPION_VARIANT


# --- validation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackProblem:
    """One invalid event of a batch: its 0-based position, the field, the value and the rule."""

    row: int
    field: str | None
    value: object
    message: str

    def __str__(self) -> str:
        where = f"events[{self.row}]" + (f".{self.field}" if self.field else "")
        return f"{where}: {self.message}"


class FeedbackValidationError(InvalidInputError):
    """A batch of feedback events breaks the data contract; nothing of it was stored."""

    def __init__(self, problems: Sequence[FeedbackProblem]) -> None:
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} invalid event(s), batch rejected: {shown}{more}")


def validate_feedback_events(events: Sequence[Mapping[str, object]], *, now: pd.Timestamp) -> pd.DataFrame:
    """Check a batch of storefront events against the data contract, all or nothing.

    Parameters
    ----------
    events
        Mappings with the event columns of `features.schema` (``item_id``, ``ts``, ``quantity``,
        ``price``, ``order_id`` optional as the contract says) and an optional ``request_id``.
    now
        Server time (naive UTC): the ``ts`` of events that come without one.

    Returns
    -------
    pandas.DataFrame
        One row per event in input order (index 0..n-1): the event columns in contract dtypes
        (``ts`` naive UTC, ``quantity`` 1 where a non-purchase omits it) and ``request_id``.

    Raises
    ------
    FeedbackValidationError
        If any event breaks a rule; every bad event is listed with its field and value.
    """
    columns = (*s.EVENT_COLUMNS, REQUEST_ID)
    unencodable = [
        FeedbackProblem(
            row=i, field=col, value=event[col], message="must be valid UTF-8 text (lone surrogate)"
        )
        for i, event in enumerate(events)
        for col in columns
        if isinstance(event.get(col), str) and not _is_utf8(event[col])
    ]
    if unencodable:
        raise FeedbackValidationError(unencodable)
    raw = pd.DataFrame({col: [event.get(col) for event in events] for col in columns}, dtype=object)
    missing_ts = raw[s.TS].isna().to_numpy()
    if missing_ts.any():
        raw.loc[missing_ts, s.TS] = now.isoformat()
    checked, quarantine = _check_contract(raw, source="request")
    if len(quarantine):
        problems = []
        for row, code, reason in zip(
            (quarantine[s.ROW_NUMBER] - 1).tolist(),
            quarantine[s.REASON_CODE].tolist(),
            quarantine[s.REASON].tolist(),
            strict=True,
        ):
            field = _CODE_FIELDS.get(code)
            value = raw.at[row, field] if field is not None else None
            if code == "before_signup":  # the stand-in users table signed everyone up in 1900
                reason = f"ts must be on or after {_EARLIEST_SIGNUP}, got {value!r}"
            problems.append(FeedbackProblem(row=int(row), field=field, value=value, message=reason))
        raise FeedbackValidationError(problems)
    checked[REQUEST_ID] = raw[REQUEST_ID].astype(s.STRING)
    return checked


def _check_contract(raw: pd.DataFrame, *, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run `validate_tables` on raw event rows (object columns) against stand-in items and users.

    Returns the valid rows in contract dtypes, indexed by their position in `raw` and in that
    order, and the quarantined event rows (``row_number`` is the 1-based position in `raw`).
    """
    raw = raw.reset_index(drop=True)
    if raw.empty:  # validate_tables needs at least one event row
        return s.empty_table(s.EVENTS), pd.DataFrame(columns=[s.ROW_NUMBER, s.REASON_CODE, s.REASON])
    # at least one row each: validate_tables fails on an empty users table (all user ids blank)
    user_ids = _present_ids(raw[s.USER_ID]) or [_PLACEHOLDER_ID]
    item_ids = _present_ids(raw[s.ITEM_ID]) or [_PLACEHOLDER_ID]
    items = pd.DataFrame({s.ITEM_ID: item_ids, s.CATEGORY: [_ANY_CATEGORY] * len(item_ids)}, dtype=object)
    users = pd.DataFrame({s.USER_ID: user_ids, s.SIGNUP_TS: [_EARLIEST_SIGNUP] * len(user_ids)}, dtype=object)
    result = validate_tables(
        {s.EVENTS: raw.loc[:, list(s.EVENT_COLUMNS)], s.ITEMS: items, s.USERS: users},
        source_files={
            s.EVENTS: source,
            s.ITEMS: f"{source} (items named)",
            s.USERS: f"{source} (users named)",
        },
    )
    quarantine = result.quarantine.loc[result.quarantine[TABLE] == s.EVENTS].reset_index(drop=True)
    bad = np.zeros(len(raw), dtype=bool)
    bad[quarantine[s.ROW_NUMBER].to_numpy(dtype=np.int64) - 1] = True
    # validate_tables returns the valid rows stably sorted by ts: undo that to restore input order
    good = np.flatnonzero(~bad)
    ts = pd.to_datetime(raw[s.TS].iloc[good].astype(s.STRING), errors="coerce", utc=True, format="ISO8601")
    positions = good[np.argsort(ts.dt.tz_localize(None).to_numpy(), kind="stable")]
    checked = result.events.set_axis(positions).sort_index()
    expected_users = raw[s.USER_ID].iloc[checked.index].astype(s.STRING).to_numpy()
    if len(checked) != len(good) or not (checked[s.USER_ID].to_numpy() == expected_users).all():
        raise RebuyError(f"{source}: validated events do not line up with the input rows")
    return checked, quarantine


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _present_ids(values: pd.Series) -> list[str]:
    text = values.dropna().astype(str)
    return list(dict.fromkeys(text[text.str.strip().str.len() > 0].tolist()))


# --- the append log -------------------------------------------------------------------------------


def append_lines(fd: int, payload: bytes) -> int:
    """Append newline-terminated `payload` to the locked, append-mode file `fd` and fsync it.

    A file whose last byte is not a newline (a crash tore its last line) gets one first, so the
    torn line stays on a line of its own. Returns the file's size before the append.
    """
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        payload = b"\n" + payload
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
    return size


def feedback_file(directory: Path, received_at: pd.Timestamp) -> Path:
    """The file a batch received at `received_at` (naive UTC) goes to: ``events-YYYYMMDD.jsonl``."""
    return directory / f"{FILE_PREFIX}{received_at:%Y%m%d}{FILE_SUFFIX}"


def append_feedback_events(events: pd.DataFrame, directory: Path, *, received_at: pd.Timestamp) -> Path:
    """Append validated events durably: one write under an exclusive lock, then ``fsync``.

    Parameters
    ----------
    events
        Output of `validate_feedback_events` with a ``variant`` column added.
    directory
        Feedback folder (created when missing).
    received_at
        Server time of the request (naive UTC); picks the day file and is stored on every record.

    Returns
    -------
    pathlib.Path
        The file appended to. When this returns, the records are on disk.

    Raises
    ------
    InvalidInputError
        If a variant is not ``champion`` or ``challenger``.
    OSError
        If the folder or file cannot be written (nothing is acknowledged then).
    """
    bad = ~events[VARIANT].isin(VARIANTS).to_numpy()
    if bad.any():
        raise InvalidInputError(
            f"variant must be one of {', '.join(VARIANTS)}, got {events[VARIANT].iloc[np.flatnonzero(bad)[0]]!r}"
        )
    payload = "".join(
        json.dumps(record, separators=(",", ":")) + "\n"
        for record in _records(events, received_at=received_at)
    ).encode("utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    path = feedback_file(directory, received_at)
    started = time.perf_counter()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close; other workers wait here
        size = append_lines(fd, payload)
    finally:
        os.close(fd)
    if size == 0:  # a new file: make its directory entry durable too
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    logger.debug(
        "appended %d events to %s in %.1f ms", len(events), path, 1e3 * (time.perf_counter() - started)
    )
    return path


def _records(events: pd.DataFrame, *, received_at: pd.Timestamp) -> list[dict[str, object]]:
    received = received_at.isoformat()
    columns = {col: events[col].tolist() for col in (*s.EVENT_COLUMNS, REQUEST_ID, VARIANT)}
    keys = events[EVENT_KEY].tolist() if EVENT_KEY in events.columns else None
    out = []
    for i in range(len(events)):
        price = columns[s.PRICE][i]
        record: dict[str, object] = {
            s.USER_ID: columns[s.USER_ID][i],
            s.ITEM_ID: _text(columns[s.ITEM_ID][i]),
            s.EVENT_TYPE: str(columns[s.EVENT_TYPE][i]),
            s.TS: columns[s.TS][i].isoformat(),
            s.QUANTITY: int(columns[s.QUANTITY][i]),
            s.PRICE: None if pd.isna(price) else float(price),
            s.ORDER_ID: _text(columns[s.ORDER_ID][i]),
            REQUEST_ID: _text(columns[REQUEST_ID][i]),
            VARIANT: columns[VARIANT][i],
            RECEIVED_AT: received,
        }
        key = None if keys is None else _text(keys[i])
        if key is not None:
            record[EVENT_KEY] = key
        out.append(record)
    return out


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


# --- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackLoad:
    """Feedback events of a folder, and the lines set aside (torn, corrupt or breaking the contract)."""

    events: pd.DataFrame
    rejected: pd.DataFrame
    files: tuple[str, ...]
    n_duplicates: int = 0
    """Records left out as repeats of an earlier record with the same ``event_key`` (retries)."""


def load_feedback(
    path: Path, *, since: pd.Timestamp | None = None, until: pd.Timestamp | None = None
) -> FeedbackLoad:
    """Read every ``events-*.jsonl`` file of a feedback folder.

    Parameters
    ----------
    path
        Feedback folder written by the service (``REBUY_EVENTS_DIR``).
    since, until
        Keep events with ``since <= ts < until`` (naive UTC); None leaves that side open.

    Returns
    -------
    FeedbackLoad
        ``events``: columns `FEEDBACK_COLUMNS` (contract dtypes; ``request_id`` and ``variant``
        strings, ``received_at`` naive UTC), sorted by ``ts``. ``rejected``: one row per line set
        aside, columns ``source_file``, ``row_number`` (1-based line), ``reason_code``
        (``torn_line``, ``corrupt_line`` or a contract code), ``reason``, ``line``. A record
        whose ``event_key`` repeats an earlier record's (a retried delivery) is left out and
        counted in ``n_duplicates``.

    Raises
    ------
    SchemaError
        If `path` is not a folder or a file cannot be read.
    """
    if not path.is_dir():
        raise SchemaError(f"feedback folder {path} does not exist or is not a folder")
    started = time.perf_counter()
    files = sorted(path.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))
    records: list[dict[str, object]] = []
    origins: list[tuple[str, int, str]] = []
    rejected: list[dict[str, object]] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SchemaError(f"{file}: cannot read feedback file: {exc}") from exc
        lines = text.split("\n")
        complete = len(lines) - 1  # the text after the last newline is a line only if non-empty
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record, problem = _parse_line(line)
            if problem is not None:
                torn = number > complete
                rejected.append(
                    {
                        s.SOURCE_FILE: str(file),
                        s.ROW_NUMBER: number,
                        s.REASON_CODE: "torn_line" if torn else "corrupt_line",
                        s.REASON: ("incomplete last line (interrupted write): " if torn else "") + problem,
                        LINE: line,
                    }
                )
                continue
            records.append(record)
            origins.append((str(file), number, line))
    raw = pd.DataFrame({col: [r.get(col) for r in records] for col in FEEDBACK_COLUMNS}, dtype=object)
    keys = pd.Series([r.get(EVENT_KEY) for r in records], dtype=object)
    received = pd.to_datetime(raw[RECEIVED_AT].astype(s.STRING), errors="coerce", utc=True, format="ISO8601")
    unreadable = received.isna().to_numpy()
    for row in np.flatnonzero(unreadable).tolist():
        file, number, line = origins[row]
        rejected.append(
            {
                s.SOURCE_FILE: file,
                s.ROW_NUMBER: number,
                s.REASON_CODE: "corrupt_line",
                s.REASON: f"received_at is not a timestamp: {raw.at[row, RECEIVED_AT]!r}",
                LINE: line,
            }
        )
    if unreadable.any():
        keep = np.flatnonzero(~unreadable)
        raw, received = raw.iloc[keep].reset_index(drop=True), received.iloc[keep].reset_index(drop=True)
        keys = keys.iloc[keep].reset_index(drop=True)
        origins = [origins[i] for i in keep.tolist()]
    # file order: the first record of a key is the original delivery, later ones are retries
    repeat = (keys.notna() & keys.duplicated()).to_numpy()
    n_duplicates = int(repeat.sum())
    if n_duplicates:
        keep = np.flatnonzero(~repeat)
        raw, received = raw.iloc[keep].reset_index(drop=True), received.iloc[keep].reset_index(drop=True)
        origins = [origins[i] for i in keep.tolist()]
        logger.info("left out %d retried feedback record(s) (same event_key as an earlier one)", n_duplicates)
    checked, quarantine = _check_contract(raw, source=str(path))
    for row, code, reason in zip(
        (quarantine[s.ROW_NUMBER] - 1).tolist(),
        quarantine[s.REASON_CODE].tolist(),
        quarantine[s.REASON].tolist(),
        strict=True,
    ):
        file, number, line = origins[row]
        rejected.append(
            {s.SOURCE_FILE: file, s.ROW_NUMBER: number, s.REASON_CODE: code, s.REASON: reason, LINE: line}
        )
    events = checked.assign(
        **{
            REQUEST_ID: raw[REQUEST_ID].iloc[checked.index].astype(s.STRING).to_numpy(),
            VARIANT: raw[VARIANT].iloc[checked.index].astype(s.STRING).to_numpy(),
            RECEIVED_AT: received.iloc[checked.index].dt.tz_localize(None).to_numpy(dtype=s.TS_DTYPE),
        }
    )
    events = events.astype({REQUEST_ID: s.STRING, VARIANT: s.STRING, RECEIVED_AT: s.TS_DTYPE})
    if since is not None:
        events = events.loc[events[s.TS] >= since]
    if until is not None:
        events = events.loc[events[s.TS] < until]
    events = events.sort_values(s.TS, kind="stable").reset_index(drop=True)
    rejected_frame = pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS)).astype({s.ROW_NUMBER: "int64"})
    rejected_frame = rejected_frame.sort_values([s.SOURCE_FILE, s.ROW_NUMBER], kind="stable").reset_index(
        drop=True
    )
    if len(rejected_frame):
        logger.warning(
            "%d feedback line(s) set aside, e.g. %s",
            len(rejected_frame),
            "; ".join(
                f"{file} line {number}: {reason}"
                for file, number, reason in rejected_frame[[s.SOURCE_FILE, s.ROW_NUMBER, s.REASON]]
                .head(3)
                .itertuples(index=False)
            ),
        )
    logger.info(
        "loaded %d feedback events from %d file(s) in %s (%d line(s) set aside) in %.2fs",
        len(events),
        len(files),
        path,
        len(rejected_frame),
        time.perf_counter() - started,
    )
    return FeedbackLoad(
        events=events, rejected=rejected_frame, files=tuple(str(f) for f in files), n_duplicates=n_duplicates
    )


def _parse_line(line: str) -> tuple[dict[str, object], str | None]:
    """A record from one line, or the reason it is not one."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return {}, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return {}, f"not a JSON object: {line[:80]!r}"
    missing = [col for col in (s.USER_ID, s.EVENT_TYPE, s.TS, VARIANT, RECEIVED_AT) if col not in record]
    if missing:
        return {}, f"missing field(s) {', '.join(missing)}"
    if record[VARIANT] not in VARIANTS:
        return {}, f"variant must be one of {', '.join(VARIANTS)}, got {record[VARIANT]!r}"
    if not isinstance(record[RECEIVED_AT], str):
        return {}, f"received_at is not a timestamp: {record[RECEIVED_AT]!r}"
    return record, None


__all__ = [
    "CHALLENGER_VARIANT",
    "CHAMPION_VARIANT",
    "EVENT_KEY",
    "FEEDBACK_COLUMNS",
    "RECEIVED_AT",
    "REQUEST_ID",
    "VARIANT",
    "VARIANTS",
    "FeedbackLoad",
    "FeedbackProblem",
    "FeedbackValidationError",
    "append_feedback_events",
    "assign_variant",
    "feedback_file",
    "load_feedback",
    "validate_feedback_events",
    "variant_bucket",
]
