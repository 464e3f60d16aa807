//! Key-value commands: get, put, delete, cas, scan.

use clap::{ArgGroup, Args};
use serde_json::json;

use super::{Context, Failed};

#[derive(Debug, Args)]
pub struct GetArgs {
    pub key: String,
    /// Read from any replica; may be stale (prints the applied index too).
    #[arg(long)]
    pub stale: bool,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    pub key: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("expectation").required(true).args(["expect", "expect_absent"])))]
pub struct CasArgs {
    pub key: String,
    /// The value to set when the comparison holds.
    #[arg(required_unless_present = "delete", conflicts_with = "delete")]
    pub new: Option<String>,
    /// The value KEY must have now.
    #[arg(long, value_name = "V")]
    pub expect: Option<String>,
    /// KEY must be absent now.
    #[arg(long)]
    pub expect_absent: bool,
    /// Delete KEY (instead of setting NEW) when the comparison holds.
    #[arg(long)]
    pub delete: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// First key (inclusive); omitted: the start of the key space.
    #[arg(default_value = "")]
    pub start: String,
    /// Last key (exclusive); omitted: the end of the key space.
    #[arg(default_value = "")]
    pub end: String,
    /// At most this many pairs; 0 means no limit.
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
}

pub async fn get(args: GetArgs, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let out = &ctx.out;
    let (value, applied) = if args.stale {
        let (value, applied) = client.get_stale(&args.key).await?;
        (value, Some(applied))
    } else {
        (client.get(&args.key).await?, None)
    };
    let Some(value) = value else {
        return Err(Failed("key not found".into()).into());
    };
    if out.json {
        let mut doc = json!({ "key": out.text(args.key.as_bytes()), "value": out.text(&value) });
        if let Some(applied) = applied {
            doc["applied_index"] = json!(applied);
        }
        out.print_json(&doc)
    } else {
        println!("{}", out.text(&value));
        if let Some(applied) = applied {
            eprintln!("(stale read at applied index {applied})");
        }
        Ok(())
    }
}

pub async fn put(args: PutArgs, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    client.put(&args.key, &args.value).await?;
    ctx.out.done(json!({ "ok": true }), "ok")
}

pub async fn delete(args: KeyArgs, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let existed = client.delete(&args.key).await?;
    let text = if existed {
        "deleted"
    } else {
        "key did not exist"
    };
    ctx.out.done(json!({ "existed": existed }), text)
}

pub async fn cas(args: CasArgs, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let out = &ctx.out;
    let expected = args.expect.as_deref().map(str::as_bytes);
    let new = args.new.as_deref().map(str::as_bytes);
    let outcome = client.cas(&args.key, expected, new).await?;
    let previous = outcome.previous.as_deref().map(|p| out.text(p));
    if out.json {
        out.print_json(&json!({ "succeeded": outcome.succeeded, "previous": previous }))?;
    } else if outcome.succeeded {
        println!("swapped");
    }
    if outcome.succeeded {
        return Ok(());
    }
    let current = match previous {
        Some(value) => format!("the current value is {value:?}"),
        None => "the key is absent".to_string(),
    };
    Err(Failed(format!("comparison failed: {current}")).into())
}

pub async fn scan(args: ScanArgs, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let out = &ctx.out;
    let pairs = client.scan(&args.start, &args.end, args.limit).await?;
    if out.json {
        let items: Vec<_> = pairs
            .iter()
            .map(|(k, v)| json!({ "key": out.text(k), "value": out.text(v) }))
            .collect();
        return out.print_json(&json!(items));
    }
    for (key, value) in &pairs {
        println!("{}\t{}", out.text(key), out.text(value));
    }
    Ok(())
}
