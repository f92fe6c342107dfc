//! HotSpot's class histogram (`jcmd PID GC.class_histogram`, taken after a full collection): live
//! instances and bytes per class. Two of them, diffed, say what a Java process kept between them, by
//! class, in grpc-java's own words (`ManagedChannelImpl`, `NettyClientTransport`).
//!
//! ```text
//!  num     #instances         #bytes  class name (module)
//! -------------------------------------------------------
//!    1:          5418         517160  [B (java.base@17.0.13)
//!    2:           301          24080  io.grpc.internal.ManagedChannelImpl
//! Total         51234        3456789
//! ```
//!
//! Pure: text in, rows out.

use std::collections::BTreeMap;

/// Live instances and bytes of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub instances: i64,
    pub bytes: i64,
}

/// The histogram's rows by class name (the module it is in left out).
pub fn parse(text: &str) -> Result<BTreeMap<String, Live>, String> {
    let mut classes: BTreeMap<String, Live> = BTreeMap::new();
    for line in text.lines() {
        let Some((rank, rest)) = line.trim_start().split_once(':') else { continue };
        // `27371:` alone is the pid `jcmd` prints first.
        if rank.is_empty() || !rank.chars().all(|c| c.is_ascii_digit()) || rest.trim().is_empty() {
            continue;
        }
        let mut words = rest.split_whitespace();
        let (Some(instances), Some(bytes), Some(class)) = (words.next(), words.next(), words.next()) else {
            return Err(format!("a class histogram row without its three columns: {line:?}"));
        };
        let number = |word: &str| word.parse::<i64>().map_err(|_| format!("not a count {word:?} in {line:?}"));
        let live = classes.entry(class.to_owned()).or_default();
        live.instances += number(instances)?;
        live.bytes += number(bytes)?;
    }
    if classes.is_empty() {
        return Err("no class histogram rows (`num: #instances #bytes class name`)".to_owned());
    }
    Ok(classes)
}

/// The classes whose live bytes grew from `before` to `after`, most bytes first.
pub fn growth(before: &BTreeMap<String, Live>, after: &BTreeMap<String, Live>) -> Vec<(String, Live)> {
    let mut grown: Vec<(String, Live)> = after
        .iter()
        .map(|(class, now)| {
            let was = before.get(class).copied().unwrap_or_default();
            (class.clone(), Live { instances: now.instances - was.instances, bytes: now.bytes - was.bytes })
        })
        .filter(|(_, grown)| grown.bytes > 0)
        .collect();
    grown.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
    grown
}

/// Net live bytes and instances grown over every class.
pub fn net(before: &BTreeMap<String, Live>, after: &BTreeMap<String, Live>) -> Live {
    let sum = |classes: &BTreeMap<String, Live>| {
        classes.values().fold(Live::default(), |total, live| Live {
            instances: total.instances + live.instances,
            bytes: total.bytes + live.bytes,
        })
    };
    let (was, now) = (sum(before), sum(after));
    Live { instances: now.instances - was.instances, bytes: now.bytes - was.bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = " num     #instances         #bytes  class name (module)\n\
        -------------------------------------------------------\n   \
        1:          5418         517160  [B (java.base@17.0.13)\n   \
        2:             1             80  io.grpc.internal.ManagedChannelImpl\n\
        Total          5419         517240\n";
    const AFTER: &str = " num     #instances         #bytes  class name (module)\n\
        -------------------------------------------------------\n   \
        1:          6418         617160  [B (java.base@17.0.13)\n   \
        2:           301          24080  io.grpc.internal.ManagedChannelImpl\n   \
        3:           300          14400  io.grpc.netty.NettyClientTransport\n\
        Total          7019         655640\n";

    #[test]
    fn two_histograms_diff_into_what_grew_by_class() {
        let (before, after) = (parse(BEFORE).unwrap(), parse(AFTER).unwrap());
        assert_eq!(before["[B"], Live { instances: 5418, bytes: 517160 }, "the module is not the class's name");
        let grown = growth(&before, &after);
        let names: Vec<(&str, i64, i64)> = grown.iter().map(|(c, l)| (c.as_str(), l.instances, l.bytes)).collect();
        assert_eq!(
            names,
            [
                ("[B", 1000, 100000),
                ("io.grpc.internal.ManagedChannelImpl", 300, 24000),
                ("io.grpc.netty.NettyClientTransport", 300, 14400),
            ]
        );
        assert_eq!(net(&before, &after), Live { instances: 1600, bytes: 138400 });
        assert!(parse("Error: the JVM is exiting").unwrap_err().contains("no class histogram rows"));
        assert!(parse("   1:   12\n").unwrap_err().contains("three columns"));
    }

    #[test]
    fn a_java_services_histograms_grow_by_a_channel_and_a_transport_per_leak() {
        // peers/java/app/shop, 3,000 requests at 300/s; `jcmd PID GC.class_histogram`, trimmed to 300 rows.
        let read = |moment: &str| {
            let path = format!("{}/tests/fixtures/java-app/histogram-{moment}.txt", env!("CARGO_MANIFEST_DIR"));
            parse(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let grown = growth(&read("warmup"), &read("end"));
        let instances = |class: &str| grown.iter().find(|(c, _)| c == class).map(|(_, live)| live.instances);
        let channels = instances("io.grpc.internal.ManagedChannelImpl").unwrap();
        assert_eq!(channels, 4242);
        assert_eq!(instances("io.grpc.netty.NettyClientTransport"), Some(channels), "a connection per channel");
        assert_eq!(grown[0].0, "[Ljava.lang.Object;", "most bytes first: {:?}", &grown[..3]);
    }
}
