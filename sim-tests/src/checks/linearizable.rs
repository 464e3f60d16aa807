//! Every key's history has a linearization (WGL search, atoll-jepsen).

use atoll_jepsen::{check, CheckResult, History};

pub fn check_history(history: &History) -> Result<(), String> {
    match check(history) {
        CheckResult::Linearizable => Ok(()),
        CheckResult::NotLinearizable(v) => Err(format!("history is not linearizable: {v}")),
        CheckResult::Unknown { keys } => Err(format!(
            "linearizability checker ran out of budget on keys {:?}",
            keys.iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        )),
    }
}
