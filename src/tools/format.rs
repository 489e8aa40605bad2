//! Small formatting helpers for tool output (markdown tables, ages).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Age like `kubectl`: `45s`, `12m`, `3h`, `2d`.
pub fn age(t: Option<&Time>, now: Timestamp) -> String {
    let Some(t) = t else { return "-".into() };
    let secs = (now.as_second() - t.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A markdown table; cells have `|` and newlines escaped.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("| {} |\n", headers.join(" | "));
    out.push_str(&format!("|{}\n", "------|".repeat(headers.len())));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| esc(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let t = |s: &str| Time(s.parse().unwrap());
        assert_eq!(age(Some(&t("2026-01-02T23:59:30Z")), now), "30s");
        assert_eq!(age(Some(&t("2026-01-02T23:00:00Z")), now), "60m");
        assert_eq!(age(Some(&t("2026-01-02T20:00:00Z")), now), "4h");
        assert_eq!(age(Some(&t("2026-01-01T00:00:00Z")), now), "2d");
        assert_eq!(age(None, now), "-");
    }

    #[test]
    fn tables_escape_pipes() {
        let t = table(&["A", "B"], &[vec!["x|y".into(), "z".into()]]);
        assert!(t.contains("x\\|y"));
        assert!(t.starts_with("| A | B |\n|------|------|\n"));
    }
}
