//! The S3 ledger backend against moto: records written by gantry and read back by the AWS
//! CLI, and the lock's conditional writes (one winner of ten, lease takeover).

use std::process::Command;
use std::time::Duration;

use gantry::state::record::{Kind, State};
use gantry::state::s3::S3Store;
use gantry::state::{Holder, LockError, Store};
use gantry::targets::Release;

use crate::services::{Services, aws_env, services, unique};

fn aws(s: &Services, args: &[&str]) -> String {
    let out = Command::new(&s.aws_cli).args(args).envs(aws_env(s)).output().expect("aws cli runs");
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn store(s: &Services) -> (String, Store) {
    let bucket = unique("state");
    aws(s, &["s3api", "create-bucket", "--bucket", &bucket]);
    for (k, v) in aws_env(s) {
        // SAFETY: set before any SDK client reads them; every test sets the same values.
        unsafe { std::env::set_var(k, v) };
    }
    let sdk = gantry::aws::load(Some("us-east-1")).await;
    (bucket.clone(), Store::S3(S3Store::new(gantry::aws::s3(&sdk), &format!("s3://{bucket}/gantry/dev"))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_plain_json_any_client_reads() {
    let s = services();
    let (bucket, store) = store(s).await;
    let release = Release { version: "1.2.3".parse().unwrap(), digest: "abc".into(), artifacts: Default::default() };
    let mut d = gantry::rollout::engine::new_record("dev", "web", Kind::Deploy, &release, None, "canary", "tester");
    d.state = State::Succeeded;
    store.save(&d).await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec![d.clone()]);
    let key = format!("gantry/dev/deployments/{}.json", d.id);
    let out = std::env::temp_dir().join(unique("record"));
    aws(s, &["s3api", "get-object", "--bucket", &bucket, "--key", &key, out.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["release"]["version"], "1.2.3");
    assert_eq!(json["state"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_ten_racing_deploys_exactly_one_takes_the_lock() {
    let s = services();
    let (_, store) = store(s).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let holder = Holder::new(&format!("deploy {i}"), "t", Duration::from_secs(30));
                store.acquire(&holder).await.map(|_| holder)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut held = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(h) => winners.push(h),
            Err(LockError::Held(_)) => held += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((winners.len(), held), (1, 9));
    assert_eq!(store.read_lock().await.unwrap().unwrap().token, winners[0].token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew() {
    let s = services();
    let (_, store) = store(s).await;
    let mut old = Holder::new("deploy 1", "t", Duration::from_secs(30));
    old.host = "another-machine".into();
    store.acquire(&old).await.unwrap();
    assert!(matches!(store.acquire(&Holder::new("x", "t", Duration::from_secs(30))).await, Err(LockError::Held(_))));
    // The holder dies: its lease runs out.
    old.expires_ms = gantry::state::now_ms() - 1;
    store.release(&old).await.unwrap();
    store.acquire(&old).await.unwrap();
    let new = Holder::new("deploy 2", "t", Duration::from_secs(30));
    let taken = store.acquire(&new).await.unwrap();
    assert_eq!(taken.map(|h| h.token), Some(old.token.clone()));
    assert!(matches!(store.renew(&old).await, Err(LockError::Lost(Some(_)))));
    store.renew(&new).await.unwrap();
    store.release(&new).await.unwrap();
    assert!(store.read_lock().await.unwrap().is_none());
}
