//! Codec impairments for the E-model: Ie and Bpl per ITU-T G.113
//! Appendix I, looked up by RTP encoding name.

/// Equipment impairment factor and packet-loss robustness of a codec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    pub ie: f64,
    pub bpl: f64,
}

/// G.711 with packet-loss concealment (G.711 Appendix I).
pub const G711_PLC: Impairment = Impairment { ie: 0.0, bpl: 25.1 };
/// G.711 without concealment (silence insertion).
pub const G711_NO_PLC: Impairment = Impairment { ie: 0.0, bpl: 4.3 };
pub const G729A: Impairment = Impairment {
    ie: 11.0,
    bpl: 19.0,
};
pub const G723_1_6K3: Impairment = Impairment {
    ie: 15.0,
    bpl: 16.1,
};
pub const GSM_EFR: Impairment = Impairment { ie: 5.0, bpl: 10.0 };

/// The impairment of an encoding name (case-insensitive), `None` if G.113
/// gives none (the caller's configured default applies). `g711_plc` says
/// whether the receivers conceal G.711 losses.
pub fn impairment(encoding: &str, g711_plc: bool) -> Option<Impairment> {
    match encoding.to_ascii_uppercase().as_str() {
        "PCMU" | "PCMA" | "G711" => Some(if g711_plc { G711_PLC } else { G711_NO_PLC }),
        "G729" | "G729A" => Some(G729A),
        "G723" => Some(G723_1_6K3),
        "GSM-EFR" => Some(GSM_EFR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g113_values() {
        assert_eq!(impairment("pcmu", true), Some(G711_PLC));
        assert_eq!(impairment("PCMA", false).map(|i| i.bpl), Some(4.3));
        assert_eq!(
            impairment("G729", true).map(|i| (i.ie, i.bpl)),
            Some((11.0, 19.0))
        );
        assert_eq!(impairment("opus", true), None);
    }
}
