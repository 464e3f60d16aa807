//! No scan page sees half of a batch: every page of the batch group holds
//! either no key or all of them, with one value (see [`crate::batch_groups`]).

use crate::batch_groups::{Page, GROUP_SIZE};

pub fn check_pages(pages: &[Page]) -> Result<(), String> {
    for page in pages {
        let whole = page.is_empty()
            || (page.len() == GROUP_SIZE && page.iter().all(|(_, v)| *v == page[0].1));
        if !whole {
            let shown: Vec<String> = page
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect();
            return Err(format!(
                "torn scan: a page of the batch group shows part of a batch: [{}]",
                shown.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(values: &[&str]) -> Page {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("grp/{i:02}").into_bytes(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn whole_pages_pass_and_mixed_or_partial_pages_fail() {
        let same = page(&["a"; GROUP_SIZE]);
        assert!(check_pages(&[same, Vec::new()]).is_ok());
        let mut mixed = page(&["a"; GROUP_SIZE]);
        mixed[3].1 = b"b".to_vec();
        assert!(check_pages(&[mixed]).is_err());
        assert!(check_pages(&[page(&["a", "a"])]).is_err());
    }
}
