//! Open-loop, fixed-rate webhook load: the latency figures of docs/benchmarks.md.
//!
//! Requests leave on a fixed schedule (`--rate` per second) whether or not earlier ones
//! have been answered, and each latency is measured from the request's *scheduled* send
//! time to the end of its answer, so a stall of the worker shows in the percentiles
//! instead of silently lowering the offered load (no coordinated omission, as wrk2
//! measures). Pacing runs on its own thread with `nanosleep` (tens of µs of slack)
//! rather than on tokio's 1 ms timer wheel.
//!
//! Each request is a GitHub `pull_request` delivery of one pre-signed body with its own
//! `X-GitHub-Delivery` (the signature covers the body only). Prints one JSON object.
//!
//! Build and locate: `cargo bench --bench openloop --no-run` (scripts/bench/latency.sh
//! does both); run: `openloop-HASH --url http://127.0.0.1:3100/webhooks/github
//! --body body.json --signature sha256=... --rate 1000 --duration 20`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

#[derive(Debug, Parser)]
#[command(about = "Open-loop fixed-rate webhook load generator")]
struct Args {
    /// Webhook URL of the worker.
    #[arg(long)]
    url: String,
    /// File holding the delivery body.
    #[arg(long)]
    body: PathBuf,
    /// `X-Hub-Signature-256` of the body.
    #[arg(long)]
    signature: String,
    /// `X-GitHub-Event`.
    #[arg(long, default_value = "pull_request")]
    event: String,
    /// Requests per second.
    #[arg(long)]
    rate: u32,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds sent at the same rate before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Most requests in flight (connections); a request waiting for one counts its wait.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Prefix of the delivery ids, so repeated runs against one backend never collide.
    #[arg(long, default_value = "openloop")]
    delivery_prefix: String,
    /// Accepted for `cargo bench` compatibility; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One answered (or failed) request.
struct Sample {
    measured: bool,
    latency: Duration,
    ok: bool,
}

fn main() {
    let args = Args::parse();
    let body = match std::fs::read(&args.body) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            eprintln!("openloop: {}: {e}", args.body.display());
            std::process::exit(2);
        }
    };
    if args.rate == 0 {
        eprintln!("openloop: --rate must be positive");
        std::process::exit(2);
    }
    // One runtime thread: the generator is meant to be pinned to one core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openloop: runtime: {e}");
            std::process::exit(2);
        }
    };
    sitg_bot::tls::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("openloop: client: {e}");
            std::process::exit(2);
        }
    };

    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let warmup = Duration::from_secs(args.warmup);
    let total = warmup + Duration::from_secs(args.duration);
    let count = (total.as_secs_f64() * f64::from(args.rate)).round() as u64;
    let slots = Arc::new(Semaphore::new(args.connections.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let handle = runtime.handle().clone();
    let start = Instant::now() + Duration::from_millis(200);

    // Pacing thread: sleeps to each scheduled instant and hands the request to tokio.
    let pacer = {
        let args_url = Arc::new(args.url.clone());
        let signature = Arc::new(args.signature.clone());
        let event = Arc::new(args.event.clone());
        let prefix = args.delivery_prefix.clone();
        std::thread::spawn(move || {
            let mut late_sends = 0u64;
            for i in 0..count {
                let scheduled = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                } else if now - scheduled > Duration::from_millis(1) {
                    late_sends += 1;
                }
                let measured = scheduled >= start + warmup;
                let (client, url, signature, event, body, slots, tx) = (
                    client.clone(),
                    Arc::clone(&args_url),
                    Arc::clone(&signature),
                    Arc::clone(&event),
                    body.clone(),
                    Arc::clone(&slots),
                    tx.clone(),
                );
                let delivery = format!("{prefix}-{i}");
                handle.spawn(async move {
                    let ok = match slots.acquire().await {
                        Ok(_slot) => {
                            let sent = client
                                .post(url.as_str())
                                .header("content-type", "application/json")
                                .header("user-agent", "GitHub-Hookshot/openloop")
                                .header("x-github-event", event.as_str())
                                .header("x-github-delivery", delivery)
                                .header("x-hub-signature-256", signature.as_str())
                                .body(body)
                                .send()
                                .await;
                            match sent {
                                // The answer counts once its body has arrived.
                                Ok(r) => {
                                    let success = r.status().is_success();
                                    r.bytes().await.is_ok() && success
                                }
                                Err(_) => false,
                            }
                        }
                        Err(_) => false,
                    };
                    let _ = tx.send(Sample {
                        measured,
                        latency: scheduled.elapsed(),
                        ok,
                    });
                });
            }
            late_sends
        })
    };

    let mut histogram = match Histogram::<u64>::new_with_bounds(1, 60_000_000, 3) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("openloop: histogram: {e}");
            std::process::exit(2);
        }
    };
    let (mut ok, mut failed, mut answered) = (0u64, 0u64, 0u64);
    runtime.block_on(async {
        while answered < count {
            let Some(sample) = rx.recv().await else { break };
            answered += 1;
            if !sample.measured {
                continue;
            }
            if sample.ok {
                ok += 1;
                let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
                let _ = histogram.record(micros.max(1));
            } else {
                failed += 1;
            }
        }
    });
    let late_sends = pacer.join().unwrap_or(0);
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let result = json!({
        "rate": args.rate,
        "duration_s": args.duration,
        "measured_requests": ok + failed,
        "ok": ok,
        "failed": failed,
        "late_sends_over_1ms": late_sends,
        "latency_ms": {
            "p50": ms(0.50),
            "p90": ms(0.90),
            "p99": ms(0.99),
            "p999": ms(0.999),
            "max": histogram.max() as f64 / 1000.0,
            "mean": histogram.mean() / 1000.0,
        },
    });
    println!("{result}");
}
