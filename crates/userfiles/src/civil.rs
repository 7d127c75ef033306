//! Hand-written civil-date conversion for the `%Y-%m-%dT%H:%M:%SL` timestamps in OTP users files.
//!
//! jiff was not used: it was not in the local registry cache, and pulling a time-zone
//! library (plus its tzdb) into a small format crate is more than this needs. Instead
//! the caller chooses a fixed UTC offset (default 0, i.e. the server runs in UTC); see
//! `otp_users` module docs for the consequences.

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DDTHH:MM:SSL` (wall clock at `utc_offset` seconds east of UTC) to Unix seconds.
pub(crate) fn parse_local_l(s: &str, utc_offset: i32) -> Option<i64> {
    let body = s.strip_suffix('L')?;
    let b = body.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let y = i64::from(num(&body[0..4])?);
    let mo = num(&body[5..7])?;
    let d = num(&body[8..10])?;
    let h = num(&body[11..13])?;
    let mi = num(&body[14..16])?;
    let se = num(&body[17..19])?;
    // strptime accepts second 60 (leap second); keep the same tolerance.
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se) - i64::from(utc_offset))
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSL` on a wall clock `utc_offset` seconds east of UTC.
pub(crate) fn format_local_l(t: i64, utc_offset: i32) -> String {
    let local = t + i64::from(utc_offset);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}L",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(parse_local_l("1970-01-01T00:00:00L", 0), Some(0));
        assert_eq!(parse_local_l("2009-06-12T17:52:32L", 0), Some(1_244_829_152));
        assert_eq!(format_local_l(1_244_829_152, 0), "2009-06-12T17:52:32L");
        assert_eq!(parse_local_l("2009-06-12T19:52:32L", 7200), Some(1_244_829_152));
        assert_eq!(format_local_l(1_244_829_152, 7200), "2009-06-12T19:52:32L");
        assert_eq!(
            parse_local_l("2024-02-29T00:00:00L", 0)
                .map(|t| format_local_l(t, 0))
                .as_deref(),
            Some("2024-02-29T00:00:00L")
        );
    }

    #[test]
    fn leap_days_and_leap_seconds() {
        assert!(parse_local_l("2000-02-29T00:00:00L", 0).is_some());
        assert!(parse_local_l("2024-02-29T00:00:00L", 0).is_some());
        assert_eq!(
            parse_local_l("2016-12-31T23:59:60L", 0),
            parse_local_l("2017-01-01T00:00:00L", 0),
            "strptime's leap second 60 is the next minute's first"
        );
    }

    #[test]
    fn years_before_zero_follow_the_proleptic_calendar() {
        // Not reachable from a four-digit timestamp, but the algorithm's own domain.
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_from_civil(-1, 12, 31), -719_529);
        assert_eq!(days_from_civil(-400, 3, 1), -719_468 - 146_097);
        assert_eq!(civil_from_days(-719_529), (-1, 12, 31));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "2009-06-12T17:52:32Z",
            "2009-13-12T17:52:32L",
            "2023-02-29T00:00:00L",
            "09-06-12T17:52:32L",
            "2009-06-12 17:52:32L",
            "",
            // each separator wrong on its own
            "2009x06-12T17:52:32L",
            "2009-06x12T17:52:32L",
            "2009-06-12T17x52:32L",
            "2009-06-12T17:52x32L",
            // a sign is not a digit, though u32's parser takes it
            "2009-+6-12T17:52:32L",
            // each field out of range on its own
            "2009-00-12T17:52:32L",
            "2009-06-00T17:52:32L",
            "2009-06-31T17:52:32L",
            "2009-06-12T24:52:32L",
            "2009-06-12T17:60:32L",
            "2009-06-12T17:52:61L",
            // February 29th only in leap years: not 1900 or 2100, but 2000 and 2024
            "1900-02-29T00:00:00L",
            "2100-02-29T00:00:00L",
        ] {
            assert_eq!(parse_local_l(s, 0), None, "{s}");
        }
    }

    #[test]
    fn roundtrip_range() {
        let mut t = -86_400 * 365 * 3;
        while t < 253_402_300_799 {
            assert_eq!(parse_local_l(&format_local_l(t, 3600), 3600), Some(t));
            t += 86_399 * 37 + 12_345;
        }
    }
}
