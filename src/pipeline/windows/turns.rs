//! The ordered hand-off between the lanes and the windows' sequential part: tasks are
//! numbered in input order (`work::WorkQueue`), and a lane feeds its task's rows to the
//! `Sequencer` only when every earlier task has fed its own. A lane waits here between
//! typing its task and evaluating it; the task before it is held by a lane that is typing
//! it or waiting here too, never evaluating (that comes after the turn), so waits are
//! short and every turn comes.

use std::sync::{Condvar, Mutex, MutexGuard};

use super::sequencer::Sequencer;

pub struct Turns {
    turn: Mutex<Turn>,
    changed: Condvar,
}

struct Turn {
    /// The task whose turn it is.
    next: u64,
    /// The run failed or stopped: nobody waits any more.
    closed: bool,
    /// Taken back once the run is over (`Turns::finish`).
    sequencer: Option<Sequencer>,
}

impl Turns {
    pub fn new(sequencer: Sequencer) -> Turns {
        Turns {
            turn: Mutex::new(Turn {
                next: 0,
                closed: false,
                sequencer: Some(sequencer),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        // A lane that panicked while feeding fails the run; the state is not used again.
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for task `seq`'s turn, runs `feed` on the sequencer, and passes the turn on;
    /// `None` once the run is closed (`close`).
    pub fn take<R>(&self, seq: u64, feed: impl FnOnce(&mut Sequencer) -> R) -> Option<R> {
        let mut turn = self.lock();
        while turn.next != seq && !turn.closed {
            turn = self.changed.wait(turn).unwrap_or_else(|e| e.into_inner());
        }
        if turn.closed {
            return None;
        }
        let fed = feed(turn.sequencer.as_mut()?);
        turn.next += 1;
        drop(turn);
        self.changed.notify_all();
        Some(fed)
    }

    /// Wakes every lane waiting for a turn, for good: the run failed or stopped, and the
    /// turn a lane waits for may never come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The sequencer, once every task has had its turn (the run is over).
    pub fn finish(&self) -> Option<Sequencer> {
        let mut turn = self.lock();
        turn.closed = true;
        self.changed.notify_all();
        turn.sequencer.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn turns_come_in_task_order_whatever_the_order_lanes_arrive_in() {
        let turns = Arc::new(Turns::new(Sequencer::new(0, Vec::new())));
        let order = Arc::new(Mutex::new(Vec::new()));
        let lanes: Vec<_> = (0..8u64)
            .rev()
            .map(|seq| {
                let (turns, order) = (Arc::clone(&turns), Arc::clone(&order));
                std::thread::spawn(move || {
                    turns
                        .take(seq, |_| order.lock().unwrap().push(seq))
                        .unwrap();
                })
            })
            .collect();
        for lane in lanes {
            lane.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
        assert!(turns.finish().is_some());
    }

    #[test]
    fn closing_wakes_a_lane_whose_turn_never_comes() {
        let turns = Arc::new(Turns::new(Sequencer::new(0, Vec::new())));
        let waiting = {
            let turns = Arc::clone(&turns);
            std::thread::spawn(move || turns.take(3, |_| ()))
        };
        turns.close();
        assert_eq!(waiting.join().unwrap(), None);
        assert_eq!(turns.take(0, |_| ()), None, "closed for good");
    }
}
