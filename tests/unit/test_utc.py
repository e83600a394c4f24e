from datetime import UTC, datetime, timedelta, timezone

from spawner.utc import iso_z


def test_times_are_written_in_utc_with_microseconds_and_z():
    tokyo = timezone(timedelta(hours=9))
    assert (
        iso_z(datetime(2026, 11, 29, 12, 5, 26, 7, tzinfo=tokyo)) == "2026-11-29T03:05:26.000007Z"
    )
    now = iso_z()
    parsed = datetime.strptime(now, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - parsed) < timedelta(seconds=5)
