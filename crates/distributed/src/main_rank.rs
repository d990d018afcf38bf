//! Doing something once for the whole job: logging and saving from rank 0.

use std::fmt::Display;

use crate::error::{DistError, Result};
use crate::group::ProcessGroup;
use crate::payload::Payload;

/// `println!` on rank 0 only (other ranks print nothing, so a job's log is one copy).
///
/// ```
/// use tapegrad_distributed::{ProcessGroup, main_println};
/// let group = ProcessGroup::single();
/// main_println!(group, "epoch {} done", 1);
/// ```
#[macro_export]
macro_rules! main_println {
    ($group:expr, $($arg:tt)*) => {
        if $group.is_main() {
            println!($($arg)*);
        }
    };
}

impl ProcessGroup {
    /// Runs `f` on rank 0 only, returning its result there and `None` elsewhere. Not
    /// collective: nothing waits.
    ///
    /// ```
    /// let group = tapegrad_distributed::ProcessGroup::single();
    /// assert_eq!(group.on_main(|| 42), Some(42));
    /// ```
    pub fn on_main<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        self.is_main().then(f)
    }

    /// Runs `save` on rank 0 only, then tells every rank how it went: collective, so no rank
    /// goes on (to read the file, or to exit) before rank 0's file is complete, and every rank
    /// learns if the save failed. The save itself should write atomically (tapegrad-nn's
    /// files do), so that a failure leaves any earlier file intact.
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// let group = ProcessGroup::single();
    /// let path = std::env::temp_dir().join(format!("tapegrad-save-on-main-{}.txt", std::process::id()));
    /// group.save_on_main(|| std::fs::write(&path, "weights")).unwrap();
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "weights");
    /// # std::fs::remove_file(&path).unwrap();
    /// let failed = group.save_on_main(|| std::fs::write("/nonexistent/dir/file", "x"));
    /// assert!(failed.unwrap_err().to_string().contains("save_on_main"));
    /// ```
    pub fn save_on_main<E: Display>(
        &self,
        save: impl FnOnce() -> std::result::Result<(), E>,
    ) -> Result<()> {
        let outcome = self.on_main(save);
        let status = match &outcome {
            Some(Err(_)) => 1,
            _ => 0,
        };
        let status = self.broadcast_async(Payload::I64(vec![status]), 0).wait()?;
        match (outcome, status.get(0) as i64) {
            (_, 0) => Ok(()),
            (Some(Err(e)), _) => {
                Err(DistError::Invalid { op: "save_on_main", message: format!("rank 0: {e}") })
            }
            _ => Err(DistError::Invalid {
                op: "save_on_main",
                message: "rank 0 could not save (its log has the reason)".into(),
            }),
        }
    }
}
