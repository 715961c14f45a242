//! Voice quality (work in progress towards the VoIP issue): the ITU-T G.107
//! E-model. SIP/SDP call tracking, RTP statistics and the shadow/production
//! comparison will join it here.

pub mod emodel;
