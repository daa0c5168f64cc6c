//! iperf3's JSON report (`iperf3 -c … -J`): the receiver's throughput and the sender's
//! retransmits of the single stream.

use anyhow::{Context, Result, bail};
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    /// Bytes per second the receiver counted.
    pub(crate) bytes_per_sec: f64,
    pub(crate) retransmits: u64,
}

impl Throughput {
    pub(crate) fn mib_per_sec(&self) -> f64 {
        self.bytes_per_sec / (1 << 20) as f64
    }
    pub(crate) fn gbit_per_sec(&self) -> f64 {
        self.bytes_per_sec * 8.0 / 1e9
    }
}

pub(crate) fn parse(json: &str) -> Result<Throughput> {
    let v: Value = serde_json::from_str(json).context("iperf3 -J output")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    let end = &v["end"];
    let bits = end["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3: no end.sum_received.bits_per_second")?;
    Ok(Throughput {
        bytes_per_sec: bits / 8.0,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_receiver_rate_and_errors() {
        let ok = r#"{"end":{"sum_sent":{"retransmits":3},"sum_received":{"bits_per_second":8388608.0}}}"#;
        let t = parse(ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.mib_per_sec(), 1.0);
        assert_eq!(t.retransmits, 3);
        let err = r#"{"start":{},"error":"unable to connect to server"}"#;
        assert!(parse(err).is_err());
        assert!(parse("{}").is_err());
    }
}
