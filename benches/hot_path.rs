//! Micro-benchmarks of the work triage adds per request, against the budgets of issue 5:
//! classify a Pingora error and count it (≤ 10 ns), render a complete error response (≤ 2 µs),
//! and the success-path additions: id, headers, metrics (≤ 1 µs); and what a server's history
//! costs an attempt (in flight, then a success; or a failure).
//!
//! Run: `cargo bench --bench hot_path` (see benches/README.md).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType};
use std::time::{Duration, SystemTime};
use triage::cause::{Cause, CauseFinding, Evidence, EvidenceSource};
use triage::config;
use triage::diagnosis::classify::Progress;
use triage::diagnosis::{diagnose, Diagnosis, Facts};
use triage::id::RequestId;
use triage::metrics::Metrics;
use triage::outcome::{Outcome, Timings};
use triage::registry::ServerHistory;
use triage::render::page::BodyFormat;
use triage::render::text::AddrText;
use triage::render::{Disclosed, Failure, Renderer};

// The allocator the `triage` binary runs with, so allocations cost here what they cost there.
#[global_allocator]
static ALLOCATOR: triage::allocator::Mimalloc = triage::allocator::Mimalloc;

fn config() -> config::LiveConfig {
    let text = "[listen]\nhttp = [\"127.0.0.1:8080\"]\n[upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n";
    match config::parse(text, std::path::Path::new(".")) {
        Ok(config) => config.live,
        Err(errors) => panic!("benchmark config: {errors}"),
    }
}

fn refused_error() -> Box<Error> {
    let mut e = Error::because(
        ErrorType::ConnectRefused,
        "Fail to connect to 127.0.0.1:3000",
        std::io::Error::from_raw_os_error(111),
    );
    e.as_up();
    e
}

fn classify_and_count(c: &mut Criterion) {
    let metrics = Metrics::new("bench").expect("metrics");
    let handles = metrics.handles(&config());
    let error = refused_error();
    c.bench_function("classify + count (connect_refused)", |b| {
        b.iter(|| {
            let diagnosis = diagnose(black_box(&Facts {
                error: &error,
                progress: Progress::Connecting,
                upstream_tls: false,
                unix_socket: false,
                upgrade: false,
                request_unsent: false,
                client_reset: None,
            }));
            handles.count_failure(0, diagnosis, Cause::Unknown);
            diagnosis
        })
    });
}

fn error_response(c: &mut Criterion) {
    let renderer = Renderer::new();
    let address: std::net::SocketAddr = "127.0.0.1:3000".parse().expect("address");
    let cause = CauseFinding::new(
        Cause::AppDown,
        "127.0.0.1:3000 answered 200 until 20:19:02 (38 s ago) and has failed to accept \
               connections since 20:19:03 (13 times): the app stopped or crashed and is not back"
            .to_owned(),
        "the server answered 200 until 20:19:02 (38 s ago) and has failed to accept \
                      connections since 20:19:03 (13 times): the app stopped or crashed"
            .to_owned(),
        vec![Evidence {
            source: EvidenceSource::History,
            fact: "last answered 200 at 20:19:02 (38 s ago)".to_owned(),
        }],
    );
    let failure = Failure {
        id: RequestId::next(),
        diagnosis: Diagnosis::ConnectRefused,
        status: http::StatusCode::BAD_GATEWAY,
        at: SystemTime::now(),
        attempts: 1,
        disclosed: Some(Disclosed {
            upstream: Some("app"),
            address: None,
            detail: "Connection refused (os error 111)",
            timings: Timings {
                connect: None,
                response: None,
                total: Duration::from_micros(420),
            },
            report_url: Some("http://127.0.0.1:9901/diagnoses/"),
        }),
        // As in a storm of refusals at an address that answered before.
        cause: Some(&cause),
    };
    let untrusted = Failure {
        disclosed: None,
        ..failure
    };
    for (name, failure, format) in [
        ("error response, JSON, trusted", &failure, BodyFormat::Json),
        ("error response, HTML, trusted", &failure, BodyFormat::Html),
        (
            "error response, JSON, untrusted",
            &untrusted,
            BodyFormat::Json,
        ),
        (
            "error response, HTML, untrusted",
            &untrusted,
            BodyFormat::Html,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                // As on the request path: the address is formatted for each failure.
                let mut failure = *black_box(failure);
                if let Some(disclosed) = &mut failure.disclosed {
                    disclosed.address = Some(AddrText::new(address));
                }
                renderer.failure_response(&failure, format)
            })
        });
    }
}

fn success_path(c: &mut Criterion) {
    let renderer = Renderer::new();
    let metrics = Metrics::new("bench").expect("metrics");
    let handles = metrics.handles(&config());
    let template = ResponseHeader::build(200, Some(4)).expect("response");
    c.bench_function("success path: id + headers + metrics", |b| {
        b.iter_batched(
            || template.clone(),
            |mut resp| {
                let id = RequestId::next();
                renderer
                    .decorate_upstream_response(&mut resp, id, None, 1, None, None)
                    .expect("decorate");
                handles.record(&Outcome {
                    id,
                    time: SystemTime::now(),
                    client: None,
                    method: "GET",
                    path: "/",
                    version: "HTTP/1.1",
                    host: "app.test",
                    referer: "",
                    user_agent: "bench",
                    route: Some(0),
                    route_label: "/",
                    upstream: Some(0),
                    upstream_name: "app",
                    address: None,
                    status: 200,
                    finding: None,
                    cause: None,
                    attempts: 1,
                    reused: true,
                    timings: Timings {
                        connect: None,
                        response: Some(Duration::from_micros(300)),
                        total: Duration::from_micros(450),
                    },
                    bytes_sent: 0,
                });
                resp
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn server_history(c: &mut Criterion) {
    let history = ServerHistory::new(SystemTime::now());
    let at = SystemTime::now();
    c.bench_function("history: in flight + success", |b| {
        b.iter(|| {
            let in_flight = history.request_started();
            history.record_success(
                black_box(200),
                Some(Duration::from_micros(300)),
                black_box(at),
            );
            drop(in_flight);
        })
    });
    c.bench_function("history: failure (a streak going on)", |b| {
        b.iter(|| history.record_failure(black_box(Diagnosis::ConnectRefused)))
    });
}

criterion_group!(
    benches,
    classify_and_count,
    error_response,
    success_path,
    server_history
);
criterion_main!(benches);
