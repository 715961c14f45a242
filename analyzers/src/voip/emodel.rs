//! ITU-T G.107 E-model (narrowband; wideband per G.107.1 in
//! [`rate_wideband`]), pure and deterministic.
//!
//! `R = Ro − Is − Id − Ie,eff + A` with the full equations of G.107 §7
//! (7-1 … 7-29) and the R → MOS mapping of Annex B (B-4), so moni can state
//! its formula and export every input beside the score. With the Table 3
//! defaults, R = 93.206208 (G.107 §7.7: "R = 93.2"). The passive-monitoring
//! convention for delay: the caller sets T = Ta (one-way mouth-to-ear delay)
//! and Tr = 2·Ta; see [`Params::with_one_way_delay`].

use std::sync::OnceLock;

/// The E-model inputs (G.107 Table 3 names and units).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Send and receive loudness ratings, dB.
    pub slr: f64,
    pub rlr: f64,
    /// Sidetone masking rating and listener sidetone rating, dB.
    pub stmr: f64,
    pub lstr: f64,
    /// D-values of telephone send and receive sides.
    pub ds: f64,
    pub dr: f64,
    /// Talker echo loudness rating, dB; weighted echo path loss, dB.
    pub telr: f64,
    pub wepl: f64,
    /// Mean one-way delay of the echo path, round-trip delay of the
    /// 4-wire loop, absolute one-way delay; all ms.
    pub t_ms: f64,
    pub tr_ms: f64,
    pub ta_ms: f64,
    /// Quantizing distortion units.
    pub qdu: f64,
    /// Equipment impairment factor and packet-loss robustness factor of the
    /// codec (G.113 Appendix I).
    pub ie: f64,
    pub bpl: f64,
    /// Packet-loss probability in percent, and the burst ratio (1 = random).
    pub ppl_percent: f64,
    pub burst_r: f64,
    /// Circuit noise at the 0 dBr point, dBm0p; noise floor, dBmp.
    pub nc: f64,
    pub nfor: f64,
    /// Room noise at send and receive side, dB(A).
    pub ps: f64,
    pub pr: f64,
    /// Advantage factor.
    pub a: f64,
    /// Delay sensitivity: minimum perceivable delay (ms) and sensitivity
    /// (G.107 06/2015 default class: 100 ms, 1).
    pub m_t: f64,
    pub s_t: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            slr: 8.0,
            rlr: 2.0,
            stmr: 15.0,
            lstr: 18.0,
            ds: 3.0,
            dr: 3.0,
            telr: 65.0,
            wepl: 110.0,
            t_ms: 0.0,
            tr_ms: 0.0,
            ta_ms: 0.0,
            qdu: 1.0,
            ie: 0.0,
            bpl: 1.0,
            ppl_percent: 0.0,
            burst_r: 1.0,
            nc: -70.0,
            nfor: -64.0,
            ps: 35.0,
            pr: 35.0,
            a: 0.0,
            m_t: 100.0,
            s_t: 1.0,
        }
    }
}

impl Params {
    /// Sets T = Ta = `delay_ms` and Tr = 2·Ta, the usual choice when only
    /// the one-way delay is known and echo control is assumed perfect.
    pub fn with_one_way_delay(mut self, delay_ms: f64) -> Self {
        let d = delay_ms.max(0.0);
        self.t_ms = d;
        self.ta_ms = d;
        self.tr_ms = 2.0 * d;
        self
    }
}

/// The rating and its components, exported beside the score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    pub ro: f64,
    pub is: f64,
    pub id: f64,
    pub ie_eff: f64,
    pub r: f64,
    pub mos: f64,
}

fn lg(x: f64) -> f64 {
    x.log10()
}

/// Ro and the parts of Is and Id that depend on neither the delay nor the
/// codec and its loss: the room and circuit noise, loudness and
/// quantizing terms (eqs 7-2..7-9, 7-15..7-17, and Roe of 7-21).
#[derive(Clone, Copy, Debug)]
struct Quiet {
    ro: f64,
    iolr: f64,
    iq: f64,
    roe: f64,
}

fn quiet(p: &Params) -> Quiet {
    let olr = p.slr + p.rlr;
    // Ro, eqs 7-2..7-7.
    let nfo = p.nfor + p.rlr;
    let pre = p.pr + 10.0 * lg(1.0 + 10f64.powf((10.0 - p.lstr) / 10.0));
    let nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0).powi(2);
    let no = 10.0
        * lg(10f64.powf(p.nc / 10.0)
            + 10f64.powf(nos / 10.0)
            + 10f64.powf(nor / 10.0)
            + 10f64.powf(nfo / 10.0));
    let ro = 15.0 - 1.5 * (p.slr + no);
    // Is, eqs 7-8, 7-9 and 7-15..7-17.
    let xolr = olr + 0.2 * (64.0 + no - p.rlr);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let q = 37.0 - 15.0 * lg(p.qdu);
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * lg(1.0 + 10f64.powf(y) + 10f64.powf(z));
    let roe = -1.5 * (no - p.rlr);
    Quiet { ro, iolr, iq, roe }
}

/// Ro, Is and Id: all of R but the codec's and the loss's Ie,eff and A.
#[derive(Clone, Copy, Debug)]
struct Path {
    ro: f64,
    is: f64,
    id: f64,
}

fn path(p: &Params, q: &Quiet) -> Path {
    let Quiet { ro, iolr, iq, roe } = *q;
    // Is, eqs 7-10..7-14 (sidetone, through the echo path's delay).
    let stmro =
        -10.0 * lg(10f64.powf(-p.stmr / 10.0) + (-p.t_ms / 4.0).exp() * 10f64.powf(-p.telr / 10.0));
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let is = iolr + ist + iq;

    // Id, eqs 7-18..7-28.
    let t = p.t_ms;
    let mut terv =
        p.telr - 40.0 * lg((1.0 + t / 10.0) / (1.0 + t / 150.0)) + 6.0 * (-0.3 * t * t).exp();
    if p.stmr < 9.0 {
        terv += ist / 2.0;
    }
    let re = 80.0 + 2.5 * (terv - 14.0);
    let mut idte =
        ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp());
    if p.stmr > 20.0 {
        idte = (idte * idte + ist * ist).sqrt();
    }
    let rle = 10.5 * (p.wepl + 7.0) * (p.tr_ms + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = if p.ta_ms <= p.m_t {
        0.0
    } else {
        let x = lg(p.ta_ms / p.m_t) / lg(2.0);
        let k = 6.0 * p.s_t;
        25.0 * ((1.0 + x.powf(k)).powf(1.0 / k) - 3.0 * (1.0 + (x / 3.0).powf(k)).powf(1.0 / k)
            + 2.0)
    };
    let id = idte + idle + idd;
    Path { ro, is, id }
}

/// Whether `a` and `b` agree, bit for bit, on every input of [`quiet`].
fn same_quiet(a: &Params, b: &Params) -> bool {
    [
        (a.slr, b.slr),
        (a.rlr, b.rlr),
        (a.lstr, b.lstr),
        (a.pr, b.pr),
        (a.ps, b.ps),
        (a.ds, b.ds),
        (a.nc, b.nc),
        (a.nfor, b.nfor),
        (a.qdu, b.qdu),
    ]
    .iter()
    .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Whether `a` and `b` agree, bit for bit, on every input of [`path`].
fn same_path(a: &Params, b: &Params) -> bool {
    same_quiet(a, b)
        && [
            (a.stmr, b.stmr),
            (a.telr, b.telr),
            (a.wepl, b.wepl),
            (a.t_ms, b.t_ms),
            (a.tr_ms, b.tr_ms),
            (a.ta_ms, b.ta_ms),
            (a.m_t, b.m_t),
            (a.s_t, b.s_t),
        ]
        .iter()
        .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Computes R and MOS from the parameters.
///
/// A probe rates every stream's window with each jitter-buffer model, twice
/// (listening quality without delay, conversational with it), and always
/// with the Table 3 defaults but for the codec, the loss and the delay:
/// the terms those leave unchanged are computed once, from the defaults,
/// and reused (about 17 `powf` a rating otherwise, a twentieth of a VoIP
/// capture's analysis). The figures are the same, bit for bit, as
/// computing every term each time (a proptest holds them to it).
pub fn rate(p: &Params) -> Rating {
    static DEFAULT_QUIET: OnceLock<Quiet> = OnceLock::new();
    static DEFAULT_PATH: OnceLock<Path> = OnceLock::new();
    let d = Params::default();
    let Path { ro, is, id } = if same_path(p, &d) {
        *DEFAULT_PATH.get_or_init(|| path(&d, &quiet(&d)))
    } else if same_quiet(p, &d) {
        path(p, DEFAULT_QUIET.get_or_init(|| quiet(&d)))
    } else {
        path(p, &quiet(p))
    };

    // Ie,eff, eq 7-29.
    let ppl = p.ppl_percent.clamp(0.0, 100.0);
    let burst_r = p.burst_r.max(1.0);
    let ie_eff = p.ie + (95.0 - p.ie) * ppl / (ppl / burst_r + p.bpl.max(f64::MIN_POSITIVE));

    let r = ro - is - id - ie_eff + p.a;
    Rating {
        ro,
        is,
        id,
        ie_eff,
        r,
        mos: mos_from_r(r),
    }
}

/// Ro of the wideband E-model (ITU-T G.107.1): the rating of a clean
/// wideband connection.
pub const RO_WB: f64 = 129.0;

/// The wideband E-model (ITU-T G.107.1) for wideband codecs (G.722,
/// AMR-WB, Opus): `R_WB = 129 − Is,WB − Id,WB − Ie,eff,WB + A` with
/// `Is,WB = 0`, `Id,WB = 1.29 · Id` (the narrowband delay impairment on
/// the 129 scale, as loom's wideband implementation does), and
/// `Ie,eff,WB = Ie,WB + (129 − Ie,WB) · Ppl / (Ppl/BurstR + Bpl)`; `p.ie`
/// is Ie,WB. MOS comes from `R_WB / 1.29` through Annex B (B-4), so one
/// MOS scale serves both bands; `r` is on the 0-129 scale.
pub fn rate_wideband(p: &Params) -> Rating {
    let nb = rate(&Params {
        ie: 0.0,
        ppl_percent: 0.0,
        ..*p
    });
    let id = 1.29 * nb.id;
    let ppl = p.ppl_percent.clamp(0.0, 100.0);
    let burst_r = p.burst_r.max(1.0);
    let ie_eff = p.ie + (RO_WB - p.ie) * ppl / (ppl / burst_r + p.bpl.max(f64::MIN_POSITIVE));
    let r = RO_WB - id - ie_eff + p.a;
    Rating {
        ro: RO_WB,
        is: 0.0,
        id,
        ie_eff,
        r,
        mos: mos_from_r(r / 1.29),
    }
}

/// G.107 Annex B (B-4), with the cubic's dip below 1 for R < 6.5 clamped.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r < 0.0 {
        1.0
    } else if r > 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn defaults_give_the_g107_reference_values() {
        let r = rate(&Params::default());
        assert!(close(r.ro, 94.768822, 1e-5), "Ro {}", r.ro);
        assert!(close(r.is, 1.413568, 1e-5), "Is {}", r.is);
        assert!(close(r.id, 0.149046, 1e-5), "Id {}", r.id);
        assert!(close(r.r, 93.206208, 1e-5), "R {}", r.r);
        assert!(close(r.mos, 4.41, 0.005), "MOS {}", r.mos);
    }

    #[test]
    fn published_reference_points() {
        let d = rate(&Params::default());
        assert!(close(d.mos, 4.4094, 5e-5), "MOS {}", d.mos);
        let loss = rate(&Params {
            bpl: 25.1,
            ppl_percent: 1.0,
            ..Params::default()
        });
        assert!(close(loss.r, 89.5664, 5e-5), "R {}", loss.r);
        assert!(close(loss.mos, 4.3282, 5e-5), "MOS {}", loss.mos);
        let delay = rate(&Params::default().with_one_way_delay(150.0));
        assert!(close(delay.r, 89.5391, 5e-5), "R {}", delay.r);
        assert!(close(delay.mos, 4.3275, 5e-5), "MOS {}", delay.mos);
    }

    #[test]
    fn mos_bands_of_annex_b() {
        for (r, mos) in [
            (90.0, 4.34),
            (80.0, 4.03),
            (70.0, 3.60),
            (60.0, 3.10),
            (50.0, 2.58),
        ] {
            assert!(close(mos_from_r(r), mos, 0.01), "R {r}: {}", mos_from_r(r));
        }
        assert_eq!(mos_from_r(3.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
    }

    #[test]
    fn ten_percent_loss_is_neither_stuck_high_nor_floored() {
        // G.711 with PLC (Bpl 25.1), 10 % random loss:
        // Ie,eff = 95 * 10 / (10 + 25.1) = 27.07.
        let p = Params {
            bpl: 25.1,
            ppl_percent: 10.0,
            ..Params::default()
        };
        let r = rate(&p);
        assert!(close(r.ie_eff, 27.065527, 1e-5), "{}", r.ie_eff);
        assert!(r.mos > 3.0 && r.mos < 3.6, "MOS {}", r.mos);
        // Bursty loss of the same amount is worse.
        let bursty = rate(&Params { burst_r: 2.0, ..p });
        assert!(bursty.mos < r.mos);
    }

    #[test]
    fn long_one_way_delay_costs_rating() {
        let near = rate(&Params::default().with_one_way_delay(50.0));
        let far = rate(&Params::default().with_one_way_delay(400.0));
        assert!(far.id > near.id + 10.0, "{} vs {}", far.id, near.id);
        assert!(far.mos < near.mos);
    }

    #[test]
    fn wideband_rating_is_on_the_g107_1_scale() {
        let clean = rate_wideband(&Params::default());
        // Id at defaults is Idle = 0.149046, scaled by 1.29.
        assert!(
            close(clean.r, 129.0 - 1.29 * 0.149046, 1e-5),
            "R {}",
            clean.r
        );
        assert!(close(clean.mos, mos_from_r(clean.r / 1.29), 1e-12));
        // G.722 (Ie,WB 13, Bpl 10) at 2 % random loss:
        // Ie,eff = 13 + 116 * 2 / (2 + 10) = 32.333.
        let lossy = rate_wideband(&Params {
            ie: 13.0,
            bpl: 10.0,
            ppl_percent: 2.0,
            ..Params::default()
        });
        assert!(close(lossy.ie_eff, 13.0 + 116.0 * 2.0 / 12.0, 1e-9));
        assert!(lossy.mos < clean.mos);
    }

    /// `rate` as G.107 writes it, every term each time: the reference
    /// the cached terms are held to (a copy on purpose: `duplicates`
    /// finds it beside `quiet` and `path`).
    fn rate_reference(p: &Params) -> Rating {
        let olr = p.slr + p.rlr;
        // Ro, eqs 7-2..7-7.
        let nfo = p.nfor + p.rlr;
        let pre = p.pr + 10.0 * lg(1.0 + 10f64.powf((10.0 - p.lstr) / 10.0));
        let nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
        let nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0).powi(2);
        let no = 10.0
            * lg(10f64.powf(p.nc / 10.0)
                + 10f64.powf(nos / 10.0)
                + 10f64.powf(nor / 10.0)
                + 10f64.powf(nfo / 10.0));
        let ro = 15.0 - 1.5 * (p.slr + no);

        // Is, eqs 7-8..7-17.
        let xolr = olr + 0.2 * (64.0 + no - p.rlr);
        let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
        let stmro = -10.0
            * lg(10f64.powf(-p.stmr / 10.0) + (-p.t_ms / 4.0).exp() * 10f64.powf(-p.telr / 10.0));
        let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
            - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
            - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
            + 29.0;
        let q = 37.0 - 15.0 * lg(p.qdu);
        let g = 1.07 + 0.258 * q + 0.0602 * q * q;
        let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
        let z = 46.0 / 30.0 - g / 40.0;
        let iq = 15.0 * lg(1.0 + 10f64.powf(y) + 10f64.powf(z));
        let is = iolr + ist + iq;

        // Id, eqs 7-18..7-28.
        let t = p.t_ms;
        let mut terv =
            p.telr - 40.0 * lg((1.0 + t / 10.0) / (1.0 + t / 150.0)) + 6.0 * (-0.3 * t * t).exp();
        if p.stmr < 9.0 {
            terv += ist / 2.0;
        }
        let roe = -1.5 * (no - p.rlr);
        let re = 80.0 + 2.5 * (terv - 14.0);
        let mut idte = ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0)
            * (1.0 - (-t).exp());
        if p.stmr > 20.0 {
            idte = (idte * idte + ist * ist).sqrt();
        }
        let rle = 10.5 * (p.wepl + 7.0) * (p.tr_ms + 1.0).powf(-0.25);
        let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
        let idd = if p.ta_ms <= p.m_t {
            0.0
        } else {
            let x = lg(p.ta_ms / p.m_t) / lg(2.0);
            let k = 6.0 * p.s_t;
            25.0 * ((1.0 + x.powf(k)).powf(1.0 / k) - 3.0 * (1.0 + (x / 3.0).powf(k)).powf(1.0 / k)
                + 2.0)
        };
        let id = idte + idle + idd;

        // Ie,eff, eq 7-29.
        let ppl = p.ppl_percent.clamp(0.0, 100.0);
        let burst_r = p.burst_r.max(1.0);
        let ie_eff = p.ie + (95.0 - p.ie) * ppl / (ppl / burst_r + p.bpl.max(f64::MIN_POSITIVE));

        let r = ro - is - id - ie_eff + p.a;
        Rating {
            ro,
            is,
            id,
            ie_eff,
            r,
            mos: mos_from_r(r),
        }
    }

    fn same_rating(a: &Rating, b: &Rating) -> bool {
        [
            (a.ro, b.ro),
            (a.is, b.is),
            (a.id, b.id),
            (a.ie_eff, b.ie_eff),
            (a.r, b.r),
            (a.mos, b.mos),
        ]
        .iter()
        // Bit for bit, but a NaN is a NaN whatever its sign: with a
        // negative `qdu` both give NaN, and a release build's code for
        // one sets the sign bit where the other's does not.
        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    proptest! {
        /// The terms computed once from the defaults give the same
        /// rating, bit for bit, as computing them every time: for the
        /// defaults with any codec, loss and delay (what a probe rates),
        /// and for any parameters at all.
        #[test]
        fn cached_terms_change_no_rating(ie in 0.0f64..60.0, bpl in 0.0f64..40.0,
                                         ppl in 0.0f64..100.0, burst in 0.0f64..5.0,
                                         delay in 0.0f64..800.0, with_delay: bool,
                                         any in proptest::collection::vec(-200.0f64..200.0, 23)) {
            let mut p = Params { ie, bpl, ppl_percent: ppl, burst_r: burst, ..Params::default() };
            if with_delay {
                p = p.with_one_way_delay(delay);
            }
            prop_assert!(same_rating(&rate(&p), &rate_reference(&p)));
            let q = Params {
                slr: any[0], rlr: any[1], stmr: any[2], lstr: any[3], ds: any[4], dr: any[5],
                telr: any[6], wepl: any[7], t_ms: any[8], tr_ms: any[9], ta_ms: any[10],
                qdu: any[11], ie: any[12], bpl: any[13], ppl_percent: any[14], burst_r: any[15],
                nc: any[16], nfor: any[17], ps: any[18], pr: any[19], a: any[20], m_t: any[21],
                s_t: any[22],
            };
            prop_assert!(same_rating(&rate(&q), &rate_reference(&q)));
            // Only the room noise differs from the defaults: the delay's
            // terms are computed, the quiet ones too.
            let r = Params { pr: any[19], ..p };
            prop_assert!(same_rating(&rate(&r), &rate_reference(&r)));
            // Only the echo differs: the quiet terms come from the defaults.
            let e = Params { telr: any[6].abs(), ..p };
            prop_assert!(same_rating(&rate(&e), &rate_reference(&e)));
        }
    }

    proptest! {
        #[test]
        fn more_loss_never_raises_mos(ppl in 0.0f64..60.0, extra in 0.0f64..40.0,
                                      burst in 1.0f64..4.0, delay in 0.0f64..600.0) {
            let p = Params { bpl: 25.1, ppl_percent: ppl, burst_r: burst,
                             ..Params::default().with_one_way_delay(delay) };
            let worse = Params { ppl_percent: ppl + extra, ..p };
            prop_assert!(rate(&worse).mos <= rate(&p).mos + 1e-12);
            prop_assert!((1.0..=4.5).contains(&rate(&p).mos));
        }

        #[test]
        fn more_burstiness_never_raises_mos(ppl in 0.0f64..40.0, burst in 1.0f64..8.0,
                                            extra in 0.0f64..8.0, bpl in 1.0f64..30.0) {
            let p = Params { bpl, ppl_percent: ppl, burst_r: burst, ..Params::default() };
            let worse = Params { burst_r: burst + extra, ..p };
            prop_assert!(rate(&worse).mos <= rate(&p).mos + 1e-12);
        }

        #[test]
        fn more_delay_never_raises_mos(delay in 0.0f64..800.0, extra in 0.0f64..400.0) {
            let a = rate(&Params::default().with_one_way_delay(delay));
            let b = rate(&Params::default().with_one_way_delay(delay + extra));
            prop_assert!(b.r <= a.r + 1e-9, "{} > {}", b.r, a.r);
        }
    }
}
