//! Observers side by side. [`Both`] is the one place that forwards every
//! event, so an observer that cares about a few of them (a time span, a
//! line count, the sessions ring) is written on its own, says what it
//! ignores, and never drops an event it did not know about.

use super::correlate::SessionObserver;
use super::format::FormatWarning;
use super::pipeline::Observer;
use super::record::{Action, LogStatus, Malformed};
use super::verdict::{Direction, SessionReport, Verdict};

/// Every event goes to the first observer, then to the second.
#[derive(Debug, Default)]
pub struct Both<A, B>(pub A, pub B);

impl<A: SessionObserver, B: SessionObserver> SessionObserver for Both<A, B> {
    fn decided(&mut self, session: &SessionReport<'_>) {
        self.0.decided(session);
        self.1.decided(session);
    }

    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    ) {
        self.0
            .traffic(interface_id, verdict, direction, packets, bytes);
        self.1
            .traffic(interface_id, verdict, direction, packets, bytes);
    }

    fn closed(&mut self, session: &SessionReport<'_>) {
        self.0.closed(session);
        self.1.closed(session);
    }

    fn wants_closed(&self) -> bool {
        self.0.wants_closed() || self.1.wants_closed()
    }

    fn evicted(&mut self, interface_id: &str) {
        self.0.evicted(interface_id);
        self.1.evicted(interface_id);
    }
}

impl<A: Observer, B: Observer> Observer for Both<A, B> {
    fn record(&mut self, interface_id: &str, action: Option<Action>, log_status: LogStatus) {
        self.0.record(interface_id, action, log_status);
        self.1.record(interface_id, action, log_status);
    }

    fn malformed(&mut self, reason: Malformed) {
        self.0.malformed(reason);
        self.1.malformed(reason);
    }

    fn format_warning(&mut self, warning: &FormatWarning) {
        self.0.format_warning(warning);
        self.1.format_warning(warning);
    }
}

impl<T: SessionObserver + ?Sized> SessionObserver for &mut T {
    fn decided(&mut self, session: &SessionReport<'_>) {
        (**self).decided(session);
    }

    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    ) {
        (**self).traffic(interface_id, verdict, direction, packets, bytes);
    }

    fn closed(&mut self, session: &SessionReport<'_>) {
        (**self).closed(session);
    }

    fn wants_closed(&self) -> bool {
        (**self).wants_closed()
    }

    fn evicted(&mut self, interface_id: &str) {
        (**self).evicted(interface_id);
    }
}

impl<T: Observer + ?Sized> Observer for &mut T {
    fn record(&mut self, interface_id: &str, action: Option<Action>, log_status: LogStatus) {
        (**self).record(interface_id, action, log_status);
    }

    fn malformed(&mut self, reason: Malformed) {
        (**self).malformed(reason);
    }

    fn format_warning(&mut self, warning: &FormatWarning) {
        (**self).format_warning(warning);
    }
}
