//! The `Cookie` request header (RFC 6265 §4.2): one cookie's value, and the header without
//! the gateway's own cookies (what an app behind the gateway may see).

/// The value of the first cookie called `name` in these `Cookie` header values (surrounding
/// quotes removed); `None` when no pair has that name.
pub fn find<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// These `Cookie` header values as one, without any pair named in `removed` (nor empty
/// pairs); `None` when nothing is left.
pub fn without<'a>(headers: impl IntoIterator<Item = &'a str>, removed: &[&str]) -> Option<String> {
    let kept: Vec<&str> = headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k).trim();
            !removed.contains(&name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_pair_of_a_name() {
        let h = ["a=1; portcullis_session=\"s1\"", "portcullis_session=s2"];
        assert_eq!(find(h, "portcullis_session"), Some("s1"));
        assert_eq!(find(h, "a"), Some("1"));
        assert_eq!(find(h, "portcullis"), None);
        assert_eq!(find(["xportcullis_session=1"], "portcullis_session"), None);
    }

    #[test]
    fn removes_every_pair_of_the_names() {
        let h = [
            "a=1; portcullis_session=s; portcullis_csrf=x",
            "b=2;portcullis_session=t",
        ];
        assert_eq!(
            without(h, &["portcullis_session", "portcullis_csrf"]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without(["portcullis_session=s"], &["portcullis_session"]), None);
        assert_eq!(
            without([" portcullis_session =s; c"], &["portcullis_session"]).as_deref(),
            Some("c")
        );
    }
}
