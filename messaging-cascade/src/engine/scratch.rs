//! Room the driver reuses from one cascade's drive to the next.
//!
//! A drive collects each decision's actions in a vector, and when it decides on its own copy
//! of a cascade's record (a store other than the in-memory one, which is decided on in place)
//! it holds that record's history and attempts; when it ends, those vectors used to be freed,
//! and the next cascade allocated the same again. They are kept here instead, emptied, one set
//! per thread: a cascade of an instant channel then costs up to three allocations fewer. [`decide`](super::decide) stays pure: it is handed the room, it
//! does not fetch it.

use std::cell::RefCell;

use super::decide::Action;
use super::record::{Attempt, CascadeRecord, HistoryEntry};

/// Room kept only up to this many elements per vector, so that one cascade with a long
/// history does not hold its room for good.
const KEEP: usize = 16;

#[derive(Default)]
struct Room {
    history: Vec<HistoryEntry>,
    attempts: Vec<Attempt>,
    actions: Vec<Action>,
}

thread_local! {
    static ROOM: RefCell<Room> = RefCell::new(Room::default());
}

/// An empty history vector, with room if a drive gave some back on this thread.
pub(super) fn history() -> Vec<HistoryEntry> {
    ROOM.with(|r| std::mem::take(&mut r.borrow_mut().history))
}

/// An empty attempts vector, as [`history`].
pub(super) fn attempts() -> Vec<Attempt> {
    ROOM.with(|r| std::mem::take(&mut r.borrow_mut().attempts))
}

/// An empty actions vector, as [`history`].
pub(super) fn actions() -> Vec<Action> {
    ROOM.with(|r| std::mem::take(&mut r.borrow_mut().actions))
}

/// Takes back the room of a drive's record and actions (their contents are dropped).
pub(super) fn give_back(record: Option<CascadeRecord>, mut actions: Vec<Action>) {
    let (mut history, mut attempts) = match record {
        Some(r) => (r.history, r.attempts),
        None => (Vec::new(), Vec::new()),
    };
    history.clear();
    attempts.clear();
    actions.clear();
    ROOM.with(|r| {
        // Never panics: no borrow of `ROOM` outlives the functions above.
        let Ok(mut room) = r.try_borrow_mut() else {
            return;
        };
        keep(&mut room.history, history);
        keep(&mut room.attempts, attempts);
        keep(&mut room.actions, actions);
    });
}

/// Keeps `v` in `slot` if it has more room than what is there, within [`KEEP`].
fn keep<T>(slot: &mut Vec<T>, v: Vec<T>) {
    if v.capacity() > slot.capacity() && v.capacity() <= KEEP {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_given_back_is_lent_again_empty_and_bounded() {
        let mut a: Vec<Action> = Vec::with_capacity(4);
        a.push(Action::NoteHealth(
            super::super::decide::HealthNote::Accepted {
                channel: "tg".into(),
            },
        ));
        give_back(None, a);
        let lent = actions();
        assert!(lent.is_empty());
        assert!(lent.capacity() >= 4, "the room came back");
        assert_eq!(actions().capacity(), 0, "lent once");
        give_back(None, Vec::with_capacity(KEEP + 1));
        assert_eq!(actions().capacity(), 0, "too much room is not kept");
    }
}
