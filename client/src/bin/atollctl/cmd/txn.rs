//! `atollctl txn`: compares, then the ops of one branch, atomically within
//! one shard. The syntax of `--if`, `--then` and `--else` (pure parsers,
//! tested below):
//!
//! - `--if 'KEY=VALUE'`, `--if 'KEY!=VALUE'`: KEY ends at the first `=`
//!   (or `!=`); VALUE is the rest, spaces and `=` included, and may be
//!   empty. So a KEY cannot contain `=` nor end with `!`.
//! - `--if 'KEY absent'`, `--if 'KEY present'`: the last word is the test;
//!   KEY is everything before it (spaces included).
//! - `--then`/`--else` `'put KEY VALUE'`, `'delete KEY'`, `'get KEY'`: KEY
//!   ends at the next space; VALUE is the rest. For delete and get, KEY is
//!   the whole rest.

use atoll_client::{Compare, Txn, TxnOp, TxnOpResult, TxnOutcome};
use clap::Args;
use serde_json::{json, Value};

use super::{Context, Usage};
use crate::output::Printer;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  atollctl txn --if 'alice=50' --if 'bob=20' \\
               --then 'put alice 40' --then 'put bob 30' \\
               --else 'get alice' --else 'get bob'
  atollctl txn --if 'lock absent' --then 'put lock me'
  atollctl txn --then 'get a' --then 'get b'      # a consistent read of both

Exits with 0 when the txn ran, whether or not the compares held (the first
line says which branch ran); with 2 for a malformed --if/--then/--else.")]
pub struct TxnArgs {
    /// A compare; all must hold for the --then ops to run:
    /// 'KEY=VALUE', 'KEY!=VALUE', 'KEY absent' or 'KEY present'.
    #[arg(long = "if", value_name = "COND", allow_hyphen_values = true)]
    pub when: Vec<String>,
    /// An op to run, in order, when every compare holds (also with no
    /// --if): 'put KEY VALUE', 'delete KEY' or 'get KEY'.
    #[arg(long = "then", value_name = "OP", allow_hyphen_values = true)]
    pub then: Vec<String>,
    /// An op to run, in order, when a compare does not hold.
    #[arg(long = "else", value_name = "OP", allow_hyphen_values = true)]
    pub otherwise: Vec<String>,
}

pub async fn txn(args: TxnArgs, ctx: &Context) -> anyhow::Result<()> {
    let txn = parse(&args)?;
    let client = ctx.client().await?;
    let outcome = client.txn(txn.clone()).await?;
    print(&ctx.out, &txn, &outcome)
}

fn parse(args: &TxnArgs) -> Result<Txn, Usage> {
    if args.when.is_empty() && args.then.is_empty() && args.otherwise.is_empty() {
        return Err(Usage(
            "nothing to do: give at least one --if, --then or --else".into(),
        ));
    }
    let mut txn = Txn::new();
    for text in &args.when {
        txn = txn.when(compare(text)?);
    }
    for text in &args.then {
        txn = txn.then(op(text)?);
    }
    for text in &args.otherwise {
        txn = txn.otherwise(op(text)?);
    }
    Ok(txn)
}

/// `KEY=VALUE`, `KEY!=VALUE`, `KEY absent`, `KEY present`.
fn compare(text: &str) -> Result<Compare, Usage> {
    if let Some((key, value)) = text.split_once('=') {
        return Ok(match key.strip_suffix('!') {
            Some(key) => Compare::not_equal(key, value),
            None => Compare::equal(key, value),
        });
    }
    match text.rsplit_once(' ') {
        Some((key, "absent")) => Ok(Compare::absent(key)),
        Some((key, "present")) => Ok(Compare::present(key)),
        _ => Err(Usage(format!(
            "--if {text:?}: expected 'KEY=VALUE', 'KEY!=VALUE', 'KEY absent' or 'KEY present'"
        ))),
    }
}

/// `put KEY VALUE`, `delete KEY`, `get KEY`.
fn op(text: &str) -> Result<TxnOp, Usage> {
    let bad = || {
        Usage(format!(
            "{text:?}: expected 'put KEY VALUE', 'delete KEY' or 'get KEY'"
        ))
    };
    let (verb, rest) = text.split_once(' ').ok_or_else(bad)?;
    match verb {
        "put" => {
            let (key, value) = rest.split_once(' ').ok_or_else(bad)?;
            Ok(TxnOp::put(key, value))
        }
        "delete" => Ok(TxnOp::delete(rest)),
        "get" => Ok(TxnOp::get(rest)),
        _ => Err(bad()),
    }
}

fn print(out: &Printer, txn: &Txn, outcome: &TxnOutcome) -> anyhow::Result<()> {
    let branch = if outcome.succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let ran = branch.iter().zip(&outcome.results);
    if out.json {
        let results: Vec<Value> = ran.map(|(op, r)| result_json(out, op, r)).collect();
        return out.print_json(&json!({ "succeeded": outcome.succeeded, "results": results }));
    }
    if outcome.succeeded {
        println!("compares held: ran the --then ops");
    } else {
        println!("compares did not hold: ran the --else ops");
    }
    for (op, result) in ran {
        let (verb, text) = match result {
            TxnOpResult::Put => ("put", "ok".to_string()),
            TxnOpResult::Delete { existed: true } => ("delete", "existed".to_string()),
            TxnOpResult::Delete { existed: false } => ("delete", "did not exist".to_string()),
            TxnOpResult::Get { value: Some(v) } => ("get", out.text(v)),
            TxnOpResult::Get { value: None } => ("get", "(absent)".to_string()),
        };
        println!("{verb} {}\t{text}", out.text(op.key()));
    }
    Ok(())
}

fn result_json(out: &Printer, op: &TxnOp, result: &TxnOpResult) -> Value {
    let key = out.text(op.key());
    match result {
        TxnOpResult::Put => json!({ "op": "put", "key": key }),
        TxnOpResult::Delete { existed } => {
            json!({ "op": "delete", "key": key, "existed": existed })
        }
        TxnOpResult::Get { value } => {
            let value = value.as_deref().map(|v| out.text(v));
            json!({ "op": "get", "key": key, "value": value })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_parse_values_with_spaces_and_equals() {
        assert_eq!(compare("a=1").unwrap(), Compare::equal("a", "1"));
        assert_eq!(compare("a!=1").unwrap(), Compare::not_equal("a", "1"));
        assert_eq!(compare("a=x = y").unwrap(), Compare::equal("a", "x = y"));
        assert_eq!(compare("a=").unwrap(), Compare::equal("a", ""));
        assert_eq!(compare("my key absent").unwrap(), Compare::absent("my key"));
        assert_eq!(compare("k present").unwrap(), Compare::present("k"));
        assert!(compare("k").is_err());
        assert!(compare("k gone").is_err());
    }

    #[test]
    fn ops_parse_and_unknown_verbs_are_usage_errors() {
        assert_eq!(op("put k v w").unwrap(), TxnOp::put("k", "v w"));
        assert_eq!(op("put k ").unwrap(), TxnOp::put("k", ""));
        assert_eq!(op("delete my key").unwrap(), TxnOp::delete("my key"));
        assert_eq!(op("get k").unwrap(), TxnOp::get("k"));
        assert!(op("put k").is_err());
        assert!(op("get").is_err());
        assert!(op("cas k v").is_err());
    }

    #[test]
    fn a_txn_keeps_the_order_of_each_flag() {
        let args = TxnArgs {
            when: vec!["a=1".into(), "b absent".into()],
            then: vec!["put b 1".into(), "get b".into()],
            otherwise: vec!["get a".into()],
        };
        let txn = parse(&args).unwrap();
        let expected = Txn::new()
            .when(Compare::equal("a", "1"))
            .when(Compare::absent("b"))
            .then(TxnOp::put("b", "1"))
            .then(TxnOp::get("b"))
            .otherwise(TxnOp::get("a"));
        assert_eq!(txn, expected);
        let empty = TxnArgs {
            when: vec![],
            then: vec![],
            otherwise: vec![],
        };
        assert!(parse(&empty).is_err());
    }
}
