//! The machine's time zone, which both pam_oath and mod_authn_otp write LASTTIME in.
//!
//! jiff's `TimeZone::system()` learns the zone's name from the `/etc/localtime` symlink
//! and then looks the name up in a database it builds by listing every file under
//! `/usr/share/zoneinfo`. A PAM login is a fresh process each time, so it paid that listing
//! on every login (the largest part of the module's own work after its file write). With
//! `TZ` unset, `/etc/localtime` read as TZif gives the same transitions without the name,
//! which nothing here needs. Like jiff, the zone is read again after five minutes.

use jiff::tz::TimeZone;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOCALTIME: &str = "/etc/localtime";
const REREAD_AFTER: Duration = Duration::from_secs(5 * 60);

static CACHED: Mutex<Option<(Instant, TimeZone)>> = Mutex::new(None);

/// The system's time zone (`TZ`, else `/etc/localtime`, else UTC, as jiff decides), read
/// without listing the zoneinfo directory when `TZ` is unset.
pub fn local_time_zone() -> TimeZone {
    let mut cached = CACHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((at, zone)) = cached.as_ref()
        && at.elapsed() < REREAD_AFTER
    {
        return zone.clone();
    }
    let zone = read_without_name().unwrap_or_else(TimeZone::system);
    *cached = Some((Instant::now(), zone.clone()));
    zone
}

/// `/etc/localtime` as an unnamed zone; `None` when `TZ` decides or the file is unusable.
fn read_without_name() -> Option<TimeZone> {
    if std::env::var_os("TZ").is_some() {
        return None;
    }
    let data = std::fs::read(LOCALTIME).ok()?;
    TimeZone::tzif("Local", &data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_zone_gives_the_offsets_jiffs_system_zone_gives() {
        // Across DST changes both ways and far from now; with TZ unset on CI this compares
        // the TZif read of /etc/localtime with jiff's named lookup of the same file.
        let ours = local_time_zone();
        let jiffs = TimeZone::system();
        for second in [
            0i64,
            1_000_000_000,
            1_700_000_000,
            1_711_846_800,
            1_730_000_000,
            2_000_000_000,
        ] {
            let t = jiff::Timestamp::from_second(second).unwrap();
            assert_eq!(ours.to_offset(t), jiffs.to_offset(t), "at {second}");
        }
    }
}
