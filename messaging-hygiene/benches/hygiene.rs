//! Hygiene throughput: a full lint of a 300-character Cyrillic message with one link (target:
//! 200,000 messages per second on one core) and SMS segment counting of short messages (target:
//! 5 million per second).
//!
//! Run: `cargo bench -p messaging-core --bench hygiene`.
//!
//! Besides wall-clock time, the two target benchmarks also run in the groups `lint_cpu_time` and
//! `sms_segments_cpu_time`, timed by the thread's own CPU time (Linux `/proc/thread-self/schedstat`), so that a loaded build machine
//! does not distort the per-core figure. Where that file is missing they fall back to wall time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use messaging_core::text::sms;
use messaging_core::text::split::{SplitConfig, split};
use messaging_core::{ChannelKind, Purpose};
use messaging_hygiene::lint::{LintContext, Linter};

/// About 300 characters of a clinic notice with one link.
fn cyrillic_message() -> String {
    let text = "Анна Петровна, здравствуйте! Напоминаем, что вы записаны на приём к терапевту \
                завтра, 12 марта, в 10:00, кабинет 5. Пожалуйста, возьмите с собой паспорт, полис \
                и результаты анализов. Подготовка к приёму и цены: clinic.ru/prices. Если планы \
                изменились, ответьте на это сообщение. Придёте?";
    assert!(
        (280..=320).contains(&text.chars().count()),
        "{}",
        text.chars().count()
    );
    text.to_owned()
}

/// CPU time this thread has run, in nanoseconds, if the kernel tells.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f` `iters` times and returns the CPU time it took (wall time where unavailable).
fn cpu_time(iters: u64, mut f: impl FnMut()) -> Duration {
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..iters {
        f();
    }
    match (cpu0, thread_cpu_ns()) {
        // The kernel updates the figure at scheduler ticks (a few ms): samples are kept long
        // (see `cpu_group`) so that this is a small error; a sample that saw no tick uses wall time.
        (Some(a), Some(b)) if b > a => Duration::from_nanos(b - a),
        _ => wall0.elapsed(),
    }
}

/// Settings for CPU-time groups: few, long samples, because the CPU-time clock ticks coarsely.
fn cpu_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g
}

fn bench_lint(c: &mut Criterion) {
    let text = cyrillic_message();
    let linter = Linter::new();
    let mut group = c.benchmark_group("lint");
    group.throughput(Throughput::Elements(1));
    let first = LintContext::new(ChannelKind::WhatsApp)
        .first_contact(true)
        .recipient_name("Анна Петровна");
    group.bench_function("cyrillic_300_chars_one_link/first_contact", |b| {
        b.iter(|| black_box(linter.lint(black_box(&text), &first)))
    });
    let marketing_sms = LintContext::new(ChannelKind::Sms)
        .bulk(true)
        .purpose(Purpose::Marketing)
        .recipient_name("Анна Петровна");
    group.bench_function("cyrillic_300_chars_one_link/marketing_sms", |b| {
        b.iter(|| black_box(linter.lint(black_box(&text), &marketing_sms)))
    });
    group.finish();
}

fn bench_segments(c: &mut Criterion) {
    let short = [
        "Anna, priem zavtra v 10:00. Pridete?",
        "Анна, приём завтра в 10:00. Придёте?",
        "Your code: 482913",
        "Ваш код: 482913",
    ];
    let mut group = c.benchmark_group("sms_segments");
    group.throughput(Throughput::Elements(short.len() as u64));
    group.bench_function("short_messages", |b| {
        b.iter(|| {
            for t in &short {
                black_box(sms::analyze(black_box(t)));
            }
        })
    });
    let long = cyrillic_message();
    group.throughput(Throughput::Elements(1));
    group.bench_function("cyrillic_300_chars", |b| {
        b.iter(|| black_box(sms::analyze(black_box(&long))))
    });
    group.finish();
}

fn bench_split(c: &mut Criterion) {
    let text = cyrillic_message().repeat(4);
    let config = SplitConfig::for_kind(ChannelKind::Telegram).max(300);
    let mut group = c.benchmark_group("split");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cyrillic_1200_chars_into_300", |b| {
        b.iter(|| black_box(split(black_box(&text), &config)))
    });
    group.finish();
}

/// The two targets again, timed by CPU time (see the module docs).
fn bench_cpu_time(c: &mut Criterion) {
    let text = cyrillic_message();
    let linter = Linter::new();
    let first = LintContext::new(ChannelKind::WhatsApp)
        .first_contact(true)
        .recipient_name("Анна Петровна");
    let mut group = cpu_group(c, "lint_cpu_time");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cyrillic_300_chars_one_link/first_contact", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                black_box(linter.lint(black_box(&text), &first));
            })
        })
    });
    group.finish();
    let short = [
        "Anna, priem zavtra v 10:00. Pridete?",
        "Анна, приём завтра в 10:00. Придёте?",
        "Your code: 482913",
        "Ваш код: 482913",
    ];
    let mut group = cpu_group(c, "sms_segments_cpu_time");
    group.throughput(Throughput::Elements(short.len() as u64));
    group.bench_function("short_messages", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                for t in &short {
                    black_box(sms::analyze(black_box(t)));
                }
            })
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_lint,
    bench_segments,
    bench_split,
    bench_cpu_time
);
criterion_main!(benches);
