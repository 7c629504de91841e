//! BFD control packets (RFC 5880 section 4.1), without authentication.

use thiserror::Error;

/// Session states as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfdState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl BfdState {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BfdState::AdminDown => "AdminDown",
            BfdState::Down => "Down",
            BfdState::Init => "Init",
            BfdState::Up => "Up",
        }
    }
}

/// Diagnostic codes (RFC 5880 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diag {
    None = 0,
    ControlDetectionExpired = 1,
    EchoFailed = 2,
    NeighborSignaledDown = 3,
    ForwardingPlaneReset = 4,
    PathDown = 5,
    ConcatenatedPathDown = 6,
    AdminDown = 7,
    ReverseConcatenatedPathDown = 8,
}

impl Diag {
    fn from_bits(b: u8) -> Self {
        match b & 0x1f {
            1 => Diag::ControlDetectionExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            _ => Diag::None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: BfdState,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
}

pub const CONTROL_LEN: usize = 24;
pub const BFD_PORT: u16 = 3784;

/// Why a received packet was discarded (RFC 5880 section 6.8.6, first paragraphs).
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum Malformed {
    #[error("shorter than 24 bytes")]
    Short,
    #[error("version is not 1")]
    Version,
    #[error("length field below 24 or beyond the packet")]
    Length,
    #[error("detect multiplier 0")]
    DetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    MyDiscZero,
    #[error("your discriminator 0 in state Up or Init")]
    YourDiscZero,
    #[error("authentication present (not configured)")]
    Auth,
}

impl ControlPacket {
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut b = [0u8; CONTROL_LEN];
        b[0] = (1 << 5) | (self.diag as u8);
        b[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = CONTROL_LEN as u8;
        b[4..8].copy_from_slice(&self.my_disc.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_disc.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx.to_be_bytes());
        b
    }

    /// Parses and applies the RFC's reception checks that need no session.
    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        if b.len() < CONTROL_LEN {
            return Err(Malformed::Short);
        }
        if b[0] >> 5 != 1 {
            return Err(Malformed::Version);
        }
        let flags = b[1];
        let auth = flags & 0x04 != 0;
        let len = b[3] as usize;
        if len < CONTROL_LEN || len > b.len() || (auth && len < CONTROL_LEN + 2) {
            return Err(Malformed::Length);
        }
        if b[2] == 0 {
            return Err(Malformed::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(Malformed::Multipoint);
        }
        let word = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        let p = ControlPacket {
            diag: Diag::from_bits(b[0]),
            state: BfdState::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: b[2],
            my_disc: word(4),
            your_disc: word(8),
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
        };
        if p.my_disc == 0 {
            return Err(Malformed::MyDiscZero);
        }
        if p.your_disc == 0 && matches!(p.state, BfdState::Up | BfdState::Init) {
            return Err(Malformed::YourDiscZero);
        }
        if auth {
            return Err(Malformed::Auth);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diag::ControlDetectionExpired,
            state: BfdState::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_disc: 0x01020304,
            your_disc: 0x0a0b0c0d,
            desired_min_tx: 10_000,
            required_min_rx: 20_000,
            required_min_echo_rx: 0,
        }
    }

    #[test]
    fn round_trip_and_wire_layout() {
        let p = sample();
        let b = p.encode();
        // Version 1, diag 1 | state Up (3 << 6) | Poll.
        assert_eq!(&b[..4], &[0x21, 0xe0, 3, 24]);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[12..16], &10_000u32.to_be_bytes());
        assert_eq!(ControlPacket::decode(&b), Ok(p));
    }

    #[test]
    fn every_malformation_is_refused() {
        let good = sample().encode();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.to_vec();
            f(&mut v);
            ControlPacket::decode(&v)
        };
        assert_eq!(ControlPacket::decode(&good[..23]), Err(Malformed::Short));
        assert_eq!(with(&|v| v[0] = (2 << 5) | 1), Err(Malformed::Version));
        assert_eq!(with(&|v| v[0] = 1), Err(Malformed::Version), "version 0");
        assert_eq!(with(&|v| v[3] = 23), Err(Malformed::Length));
        assert_eq!(
            with(&|v| v[3] = 25),
            Err(Malformed::Length),
            "length beyond the packet"
        );
        assert_eq!(with(&|v| v[2] = 0), Err(Malformed::DetectMult));
        assert_eq!(with(&|v| v[1] |= 0x01), Err(Malformed::Multipoint));
        assert_eq!(
            with(&|v| v[4..8].copy_from_slice(&[0; 4])),
            Err(Malformed::MyDiscZero)
        );
        assert_eq!(
            with(&|v| v[8..12].copy_from_slice(&[0; 4])),
            Err(Malformed::YourDiscZero)
        );
        assert_eq!(
            with(&|v| {
                v[8..12].copy_from_slice(&[0; 4]);
                v[1] = 0x40; // Down: your discriminator may be 0
            })
            .map(|p| p.state),
            Ok(BfdState::Down)
        );
        assert_eq!(
            with(&|v| {
                v[1] |= 0x04;
                v[3] = 26;
                v.extend_from_slice(&[1, 2]);
            }),
            Err(Malformed::Auth)
        );
        // Trailing bytes beyond the length field are allowed (padding).
        let mut padded = good.to_vec();
        padded.extend_from_slice(&[0; 8]);
        assert!(ControlPacket::decode(&padded).is_ok());
    }
}
