//! The ordered hand-off between the lanes and the windows' sequential part: tasks are
//! numbered in input order (`work::WorkQueue`), and a lane feeds its task's rows to the
//! `Sequencer` only when every earlier task has fed its own. A lane waits here between
//! typing its task and evaluating it; the task before it is held by a lane that is typing
//! it or waiting here too, never evaluating (that comes after the turn), so waits are
//! short and every turn comes. A lane waits on the condition variable of its task's
//! number modulo `GATES`, and passing the turn wakes only the lanes waiting on the next
//! task's: waking every lane at every turn cost 64 lanes of one-row tasks 15 times the
//! run's time, in the kernel.

use std::sync::{Condvar, Mutex, MutexGuard};

use super::sequencer::Sequencer;

/// Condition variables a turn's waiters are spread over (by task number): more than the
/// lanes of most runs, so that passing a turn mostly wakes the one lane it is for.
const GATES: usize = 64;

pub struct Turns {
    turn: Mutex<Turn>,
    /// Task `seq` waits on `gates[seq % GATES]`.
    gates: [Condvar; GATES],
}

struct Turn {
    /// The task whose turn it is.
    next: u64,
    /// The run failed or stopped: nobody waits any more.
    closed: bool,
    /// The first task that no longer takes its turn (a lane failed there): later ones give
    /// up, earlier ones still take theirs, so that the writer reaches the failure.
    failed_at: u64,
    /// Taken back once the run is over (`Turns::finish`).
    sequencer: Option<Sequencer>,
    /// Wake-ups of a lane whose turn had not come (tests: passing a turn wakes its lane).
    #[cfg(test)]
    idle_wakeups: u64,
}

impl Turns {
    pub fn new(sequencer: Sequencer) -> Turns {
        Turns {
            turn: Mutex::new(Turn {
                next: 0,
                closed: false,
                failed_at: u64::MAX,
                sequencer: Some(sequencer),
                #[cfg(test)]
                idle_wakeups: 0,
            }),
            gates: std::array::from_fn(|_| Condvar::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        // A lane that panicked while feeding fails the run; the state is not used again.
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for task `seq`'s turn, runs `feed` on the sequencer, and passes the turn on;
    /// `None` once the run is closed (`close`), or a task before it failed (`close_from`).
    pub fn take<R>(&self, seq: u64, feed: impl FnOnce(&mut Sequencer) -> R) -> Option<R> {
        let mut turn = self.lock();
        let gate = &self.gates[seq as usize % GATES];
        let given_up = |turn: &Turn| turn.closed || seq >= turn.failed_at;
        while turn.next != seq && !given_up(&turn) {
            turn = gate.wait(turn).unwrap_or_else(|e| e.into_inner());
            #[cfg(test)]
            {
                turn.idle_wakeups += u64::from(turn.next != seq && !given_up(&turn));
            }
        }
        if given_up(&turn) {
            return None;
        }
        let fed = feed(turn.sequencer.as_mut()?);
        turn.next += 1;
        let next = turn.next;
        drop(turn);
        // Only the next task's lane (and any waiting on the same gate) wakes.
        self.gates[next as usize % GATES].notify_all();
        Some(fed)
    }

    /// Wakes every lane waiting for a turn, for good: the run failed or stopped, and the
    /// turn a lane waits for may never come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake_all();
    }

    /// Task `seq` failed, maybe before its turn: it and every later task give up their
    /// turns (the run fails there), while the tasks before it still take theirs.
    pub fn close_from(&self, seq: u64) {
        {
            let mut turn = self.lock();
            turn.failed_at = turn.failed_at.min(seq);
        }
        self.wake_all();
    }

    fn wake_all(&self) {
        for gate in &self.gates {
            gate.notify_all();
        }
    }

    /// The sequencer, once every task has had its turn (the run is over).
    pub fn finish(&self) -> Option<Sequencer> {
        let mut turn = self.lock();
        turn.closed = true;
        self.wake_all();
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

    /// 16 lanes, each waiting for its next task's turn: passing a turn wakes the lane it
    /// is for, not the 15 others (all of them woke at every turn: 64 lanes of one-row
    /// tasks spent most of a run waking up).
    #[test]
    fn passing_a_turn_wakes_only_the_lane_it_is_for() {
        const LANES: u64 = 16;
        const TASKS: u64 = 4000;
        let turns = Arc::new(Turns::new(Sequencer::new(0, Vec::new())));
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                let turns = Arc::clone(&turns);
                std::thread::spawn(move || {
                    for seq in (lane..TASKS).step_by(LANES as usize) {
                        turns.take(seq, |_| ()).unwrap();
                    }
                })
            })
            .collect();
        for lane in lanes {
            lane.join().unwrap();
        }
        let idle = turns.lock().idle_wakeups;
        // Spurious wake-ups happen, but not one per lane and turn (~60,000).
        assert!(
            idle < TASKS,
            "{idle} wake-ups of a lane whose turn had not come"
        );
        assert!(turns.finish().is_some());
    }

    #[test]
    fn a_task_that_failed_gives_up_the_turns_after_it_not_before() {
        let turns = Arc::new(Turns::new(Sequencer::new(0, Vec::new())));
        let (before, after) = {
            let take = |seq| {
                let turns = Arc::clone(&turns);
                std::thread::spawn(move || turns.take(seq, |_| seq))
            };
            (take(1), take(3))
        };
        // Task 2 failed before its turn: task 3 never gets one, task 1 still does.
        turns.close_from(2);
        assert_eq!(after.join().unwrap(), None);
        assert_eq!(turns.take(0, |_| 0), Some(0));
        assert_eq!(before.join().unwrap(), Some(1));
        assert_eq!(turns.take(2, |_| 2), None);
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
