//! One runner per vector file.

pub mod address;
pub mod dataexchange;
pub mod eventstream;
pub mod packet;
pub mod replay_window;
pub mod tcp_frame;
pub mod tunnel_frames;
