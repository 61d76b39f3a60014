//! Tests of the log file format, its reader and follow mode.

use super::*;

fn records(chunks: &[(Stream, i64, &[u8])]) -> Vec<u8> {
    let mut out = vec![];
    let mut w = RecordWriter::new(&mut out);
    for (s, t, d) in chunks {
        w.write_chunk(*s, *t, d).unwrap();
    }
    out
}

#[test]
fn chunks_become_records_per_line_and_parts() {
    let out = records(&[
        (Stream::Stdout, 12, b"a\nbb\ncc"),
        (Stream::Stderr, 13, b"e\n"),
        (Stream::Stdout, 14, b"c\n\n"),
    ]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "12 stdout F a\n12 stdout F bb\n12 stdout P cc\n13 stderr F e\n\
             14 stdout F c\n14 stdout F \n"
    );
    assert_eq!(
        parse_record(b"12 stdout P c c"),
        Some(Record {
            nanos: 12,
            stream: Stream::Stdout,
            full: false,
            content: b"c c"
        })
    );
    assert_eq!(parse_record(b"12 stdout F ").unwrap().content, b"");
    assert!(parse_record(b"x stdout F a").is_none());
    assert!(parse_record(b"1 stdin F a").is_none());
    assert!(parse_record(b"1 stdout").is_none());
}

#[test]
fn long_lines_go_past_the_buffer_whole() {
    let long = vec![b'x'; 10_000];
    let mut chunk = long.clone();
    chunk.extend_from_slice(b"\nshort\n");
    let out = records(&[(Stream::Stdout, 5, &chunk)]);
    let lines = lines_of(&out, true);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].text.len(), 10_001);
    assert_eq!(lines[1].text, b"short\n");
}

/// The reader over a records file holding `bytes`.
fn lines_of(bytes: &[u8], finish: bool) -> Vec<Line> {
    let dir = std::env::temp_dir().join(format!(
        "minirt-logs-test-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("l");
    std::fs::write(&p, bytes).unwrap();
    let mut r = LogReader {
        sources: vec![Source::Records {
            file: std::fs::File::open(&p).unwrap(),
            tail: vec![],
            open: [None, None],
        }],
        records_path: dir.join("none"),
        has_records: true,
    };
    let mut v = r.poll().unwrap();
    if finish {
        v.extend(r.finish());
    }
    r.rewind().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    v
}

#[test]
fn parts_are_joined_per_stream_and_keep_their_first_time() {
    let out = records(&[
        (Stream::Stdout, 1, b"hel"),
        (Stream::Stderr, 2, b"oops\n"),
        (Stream::Stdout, 3, b"lo\nlast"),
    ]);
    let l = |nanos, stream, text: &[u8]| Line {
        nanos,
        stream,
        text: text.to_vec(),
    };
    assert_eq!(
        lines_of(&out, false),
        vec![
            l(2, Stream::Stderr, b"oops\n"),
            l(1, Stream::Stdout, b"hello\n")
        ]
    );
    // At the end, the line without newline is shown as it was cut.
    assert_eq!(lines_of(&out, true)[2], l(3, Stream::Stdout, b"last"));
    // A record being written (no newline yet) waits for the rest.
    let mut half = out.clone();
    half.extend_from_slice(b"9 stdout F part");
    assert_eq!(lines_of(&half, false).len(), 2);
}

#[test]
fn select_filters_by_time_then_tails_over_both_streams() {
    let l = |nanos, stream| Line {
        nanos,
        stream,
        text: b"x\n".to_vec(),
    };
    let all = vec![
        l(10, Stream::Stdout),
        l(20, Stream::Stderr),
        l(30, Stream::Stdout),
        l(40, Stream::Stderr),
    ];
    let o = |since, until, tail| ShowOptions {
        since,
        until,
        tail,
        ..Default::default()
    };
    let times = |v: Vec<Line>| v.iter().map(|l| l.nanos).collect::<Vec<_>>();
    assert_eq!(times(select(all.clone(), &o(None, None, Some(1)))), [40]);
    assert_eq!(
        times(select(all.clone(), &o(Some(20), None, None))),
        [20, 30, 40]
    );
    assert_eq!(
        times(select(all.clone(), &o(None, Some(30), Some(2)))),
        [20, 30]
    );
    assert_eq!(
        times(select(all.clone(), &o(Some(20), Some(30), Some(0)))),
        [] as [i64; 0]
    );
}

#[test]
fn rendering_adds_the_time_and_the_details_prefix() {
    let line = Line {
        nanos: 1_700_000_000_000_000_123,
        stream: Stream::Stdout,
        text: b"hi\n".to_vec(),
    };
    let mut o = ShowOptions {
        timestamps: true,
        ..Default::default()
    };
    assert_eq!(o.render(&line), b"2023-11-14T22:13:20.000000123Z hi\n");
    o.details = true;
    assert_eq!(o.render(&line), b"2023-11-14T22:13:20.000000123Z  hi\n");
    o.timestamps = false;
    assert_eq!(o.render(&line), b" hi\n");
}

#[test]
fn times_in_dockers_forms() {
    let now = 1_700_000_000_000_000_000;
    let s = 1_000_000_000;
    assert_eq!(parse_time("10m", now), Ok(now - 600 * s));
    assert_eq!(parse_time("1h30m", now), Ok(now - 5400 * s));
    assert_eq!(parse_time("1.5h", now), Ok(now - 5400 * s));
    assert_eq!(parse_time("300ms", now), Ok(now - 300_000_000));
    assert_eq!(parse_time("-1m", now), Ok(now + 60 * s));
    assert_eq!(parse_time("1700000000", now), Ok(now));
    assert_eq!(parse_time("1700000000.5", now), Ok(now + s / 2));
    assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(now));
    assert_eq!(parse_time("2023-11-14T22:13:20.25Z", now), Ok(now + s / 4));
    assert_eq!(parse_time("2023-11-14T23:13:20+01:00", now), Ok(now));
    assert_eq!(parse_time("2023-11-14T22:13:20", now), Ok(now));
    assert_eq!(parse_time("2023-11-14T22:13", now), Ok(now - 20 * s));
    assert_eq!(parse_time("2023-11-14", now), Ok(now - 80_000 * s));
    for bad in ["", "yesterday", "10x", "1h5", "2023-13-01", "1.2.3", "m"] {
        assert!(parse_time(bad, now).is_err(), "{bad}");
    }
}
