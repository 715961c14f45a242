//! Codec impairments for the E-model: Ie and Bpl per codec, looked up by
//! RTP encoding name (case-insensitive).
//!
//! Where the values come from (see `../shared/reference/voice-quality.md`
//! §1.4 for every source and its confidence):
//! - ITU-T G.113 Appendix I (2007: Table I.1 Ie, Table I.3 Bpl), narrowband:
//!   G.711 with PLC (G.711 Appendix I) 0 / 25.1, without PLC 0 / 4.3;
//!   G.729A + VAD 11 / 19.0; G.723.1 6.3k + VAD 15 / 16.1; GSM-EFR
//!   (= AMR-NB 12.2) 5 / 10. Ie only (G.113 gives no Bpl row for them;
//!   their Bpl is the configured `unknown_codec_bpl`): G.726 at 40/32/24/16
//!   kbit/s 2 / 7 / 25 / 50, G.728 16k 7, GSM-FR 20, GSM-HR 23.
//! - Wideband (ITU-T G.107.1, Ie,WB and Bpl as implementations quote G.113
//!   Appendix IV; not re-verified against the ITU text): G.722 64k 13 / 10,
//!   AMR-WB (G.722.2) 12.65k 13 / 13. Scored on the G.107.1 scale
//!   ([`crate::voip::emodel::rate_wideband`]).
//! - No ITU value, documented defaults the operator overrides per name
//!   (`rtp.codec_impairments`): Opus wideband Ie 5 / Bpl 15 (provisional
//!   values as loom seeds them); iLBC, Speex, SILK and every other name get
//!   `unknown_codec_ie` / `unknown_codec_bpl` (10 / 10).
//! - AMR-NB: the mode is not read from the payload, so `AMR` is scored with
//!   the 12.2 kbit/s row (the only AMR mode with a G.113 Bpl here); the
//!   operator can override it per name.
//!
//! Where a G.113 row depends on the rate (G.726, G.723.1), the encoding
//! name decides: `G726-16` … `G726-40` (RFC 3551), `G721` = G.726-32, `G723`
//! = 6.3k (RFC 3551 gives no rate in the name; the 6.3k row is G.113's
//! reference).

/// Equipment impairment factor and packet-loss robustness of a codec, and
/// whether it is scored on the wideband (G.107.1) scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    pub ie: f64,
    pub bpl: f64,
    /// Wideband codec: Ie is Ie,WB and the rating is G.107.1's.
    pub wideband: bool,
}

impl Impairment {
    /// A narrowband impairment.
    pub const fn narrow(ie: f64, bpl: f64) -> Impairment {
        Impairment {
            ie,
            bpl,
            wideband: false,
        }
    }

    /// A wideband (G.107.1) impairment.
    pub const fn wide(ie: f64, bpl: f64) -> Impairment {
        Impairment {
            ie,
            bpl,
            wideband: true,
        }
    }
}

/// G.711 with packet-loss concealment (G.711 Appendix I): G.113 App. I.
pub const G711_PLC: Impairment = Impairment::narrow(0.0, 25.1);
/// G.711 without concealment (silence insertion): G.113 App. I.
pub const G711_NO_PLC: Impairment = Impairment::narrow(0.0, 4.3);
/// G.729A + VAD, 2 frames per packet: G.113 App. I.
pub const G729A: Impairment = Impairment::narrow(11.0, 19.0);
/// G.723.1 6.3 kbit/s + VAD: G.113 App. I.
pub const G723_1_6K3: Impairment = Impairment::narrow(15.0, 16.1);
/// GSM-EFR = AMR-NB 12.2 kbit/s: G.113 App. I.
pub const GSM_EFR: Impairment = Impairment::narrow(5.0, 10.0);
/// G.722 64 kbit/s, wideband (Ie,WB, G.107.1).
pub const G722: Impairment = Impairment::wide(13.0, 10.0);
/// AMR-WB (G.722.2) 12.65 kbit/s, wideband (Ie,WB, G.107.1).
pub const AMR_WB: Impairment = Impairment::wide(13.0, 13.0);
/// Opus: no ITU value; provisional wideband default (overridable).
pub const OPUS_DEFAULT: Impairment = Impairment::wide(5.0, 15.0);

/// What the table knows of a codec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Known {
    /// Ie and Bpl.
    Full(Impairment),
    /// Ie only (G.113 gives no Bpl row): Bpl is the configured default.
    IeOnly(f64),
}

/// The table entry of an encoding name (case-insensitive), `None` if no
/// value is known (the caller's configured default applies). `g711_plc`
/// says whether the receivers conceal G.711 losses.
pub fn lookup(encoding: &str, g711_plc: bool) -> Option<Known> {
    use Known::{Full, IeOnly};
    Some(match encoding.to_ascii_uppercase().as_str() {
        "PCMU" | "PCMA" | "G711" => Full(if g711_plc { G711_PLC } else { G711_NO_PLC }),
        "G729" | "G729A" | "G729AB" => Full(G729A),
        "G723" | "G7231" | "G723.1" => Full(G723_1_6K3),
        "GSM-EFR" | "AMR" => Full(GSM_EFR),
        "G722" => Full(G722),
        "AMR-WB" => Full(AMR_WB),
        "OPUS" => Full(OPUS_DEFAULT),
        "G726-40" => IeOnly(2.0),
        "G726-32" | "G721" | "G726" => IeOnly(7.0),
        "G726-24" => IeOnly(25.0),
        "G726-16" => IeOnly(50.0),
        "G728" => IeOnly(7.0),
        "GSM" => IeOnly(20.0),
        "GSM-HR" | "GSM-HR-08" => IeOnly(23.0),
        _ => return None,
    })
}

/// The impairment of an encoding name: an operator override first
/// (`overrides`, names compared case-insensitively), then the table, then
/// `unknown` (whose Bpl also completes Ie-only rows).
pub fn impairment(
    encoding: &str,
    g711_plc: bool,
    overrides: &[(String, Impairment)],
    unknown: Impairment,
) -> Impairment {
    if let Some((_, i)) = overrides
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(encoding))
    {
        return *i;
    }
    match lookup(encoding, g711_plc) {
        Some(Known::Full(i)) => i,
        Some(Known::IeOnly(ie)) => Impairment::narrow(ie, unknown.bpl),
        None => unknown,
    }
}

/// The usual RTP clock rate of an encoding name (RFC 3551, RFC 7587,
/// RFC 4867, RFC 3952, RFC 5574), for dynamic payload types the operator
/// names without a rate.
pub fn default_clock_rate(encoding: &str) -> Option<u32> {
    Some(match encoding.to_ascii_uppercase().as_str() {
        "OPUS" => 48_000,
        "AMR-WB" | "G7221" => 16_000,
        "PCMU" | "PCMA" | "G722" | "G729" | "G723" | "GSM" | "GSM-EFR" | "AMR" | "ILBC"
        | "SPEEX" | "G726-16" | "G726-24" | "G726-32" | "G726-40" | "G728" | "TELEPHONE-EVENT"
        | "CN" => 8000,
        "H264" | "H265" | "VP8" | "VP9" | "AV1" => 90_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNKNOWN: Impairment = Impairment::narrow(10.0, 10.0);

    fn imp(name: &str) -> Impairment {
        impairment(name, true, &[], UNKNOWN)
    }

    #[test]
    fn g113_values() {
        assert_eq!(imp("pcmu"), G711_PLC);
        assert_eq!(impairment("PCMA", false, &[], UNKNOWN).bpl, 4.3);
        assert_eq!((imp("G729").ie, imp("G729").bpl), (11.0, 19.0));
        assert_eq!((imp("G723").ie, imp("G723").bpl), (15.0, 16.1));
        assert_eq!((imp("GSM-EFR").ie, imp("AMR").bpl), (5.0, 10.0));
        assert_eq!(imp("G726-24").ie, 25.0);
        assert_eq!(imp("g728").ie, 7.0);
        assert_eq!(imp("GSM").ie, 20.0);
        // Ie-only rows take the configured default Bpl.
        assert_eq!(imp("G726-32"), Impairment::narrow(7.0, 10.0));
    }

    #[test]
    fn wideband_codecs_are_flagged() {
        assert!(imp("G722").wideband);
        assert!(imp("AMR-WB").wideband);
        assert!(imp("opus").wideband);
        assert!(!imp("PCMU").wideband);
    }

    #[test]
    fn codecs_without_an_itu_value_use_the_default_or_the_override() {
        assert_eq!(imp("speex"), UNKNOWN);
        assert_eq!(imp("iLBC"), UNKNOWN);
        let o = vec![("ILBC".to_string(), Impairment::narrow(11.0, 32.0))];
        assert_eq!(
            impairment("iLBC", true, &o, UNKNOWN),
            Impairment::narrow(11.0, 32.0)
        );
        // An override also replaces a table row.
        let o = vec![("opus".to_string(), Impairment::wide(8.0, 20.0))];
        assert_eq!(impairment("OPUS", true, &o, UNKNOWN).ie, 8.0);
    }

    #[test]
    fn default_clocks() {
        assert_eq!(default_clock_rate("opus"), Some(48_000));
        assert_eq!(default_clock_rate("AMR-WB"), Some(16_000));
        assert_eq!(default_clock_rate("iLBC"), Some(8000));
        assert_eq!(default_clock_rate("foo"), None);
    }
}
