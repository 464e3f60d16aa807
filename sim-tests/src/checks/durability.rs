//! No acknowledged write is lost: after the faults are healed and every node
//! has recovered, each acknowledged unique key reads back its value.

pub fn check_acked_writes(
    acked: &[(Vec<u8>, Vec<u8>)],
    read_back: &[Option<Vec<u8>>],
) -> Result<(), String> {
    let lost: Vec<String> = acked
        .iter()
        .zip(read_back)
        .filter(|((_, v), got)| got.as_ref() != Some(v))
        .map(|((k, _), got)| {
            format!(
                "{} (read {:?})",
                String::from_utf8_lossy(k),
                got.as_ref()
                    .map(|g| String::from_utf8_lossy(g).into_owned())
            )
        })
        .collect();
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} acknowledged writes lost: {}",
            lost.len(),
            acked.len(),
            lost.join(", ")
        ))
    }
}
