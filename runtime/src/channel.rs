//! Channels between tasks, and the input gate that reads a task's channels.
//!
//! Every channel is a bounded queue of [`Message`]s: a sender waits when it is
//! full, so a slow consumer pushes back on its producers and memory stays bounded.

use std::future::poll_fn;
use std::task::Poll;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;

use crate::checkpoint::Barrier;
use crate::error::RuntimeError;
use crate::time::Watermark;

/// What flows on a channel.
#[derive(Debug, Clone)]
pub enum Message {
    Data(RecordBatch),
    Watermark(Watermark),
    /// Everything before belongs to checkpoint `id`, everything after to the next.
    Barrier(Barrier),
    /// The sender will send nothing more.
    EndOfStream,
}

pub type Sender = mpsc::Sender<Message>;
pub type Receiver = mpsc::Receiver<Message>;

/// A bounded channel holding at most `capacity` messages.
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    mpsc::channel(capacity.max(1))
}

/// One incoming channel of a task.
#[derive(Debug)]
pub struct InputChannel {
    pub receiver: Receiver,
    /// The operator input (0, 1, ...) the channel feeds.
    pub input: usize,
}

/// Reads all incoming channels of a task, fairly, until each has ended.
#[derive(Debug)]
pub struct InputGate {
    channels: Vec<InputChannel>,
    finished: Vec<bool>,
    /// Channels that delivered a checkpoint barrier the others have not yet.
    blocked: Vec<bool>,
    remaining: usize,
    next: usize,
}

impl InputGate {
    pub fn new(channels: Vec<InputChannel>) -> Self {
        let n = channels.len();
        InputGate {
            channels,
            finished: vec![false; n],
            blocked: vec![false; n],
            remaining: n,
            next: 0,
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Stops reading `channel` until [`InputGate::unblock_all`] (barrier alignment).
    pub fn block(&mut self, channel: usize) {
        self.blocked[channel] = true;
    }

    pub fn unblock_all(&mut self) {
        self.blocked.fill(false);
    }

    /// Channels that have not ended.
    pub fn open_channels(&self) -> usize {
        self.remaining
    }

    /// The operator input of channel `channel`.
    pub fn input_of(&self, channel: usize) -> usize {
        self.channels[channel].input
    }

    /// The next message and the index of its channel, or `None` once every
    /// channel has sent end of stream. A channel whose sender vanished without
    /// end of stream is an error: its task failed, and reports why itself.
    pub async fn next(&mut self) -> Result<Option<(usize, Message)>, RuntimeError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let (channel, message) = poll_fn(|cx| {
            let n = self.channels.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.finished[i] || self.blocked[i] {
                    continue;
                }
                match self.channels[i].receiver.poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        self.next = (i + 1) % n;
                        return Poll::Ready(Some((i, m)));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
        .ok_or(RuntimeError::ChannelClosed)?;
        if matches!(message, Message::EndOfStream) {
            self.finished[channel] = true;
            self.remaining -= 1;
        }
        Ok(Some((channel, message)))
    }
}
