//! The activities the first-shape workflow runs, declared without their implementation (the
//! `activities` crate implements them). Their names are the ones its recorded histories hold.

use super::inputs::*;
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

pub struct SellWindowActivities;

#[activity_definitions]
impl SellWindowActivities {
    #[activity]
    pub fn record_reservations(w: ReservationWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn confirm_batch(w: ConfirmWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn open_payments(w: PaymentsWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn mark_paid(w: PaidWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn mark_paid_many(w: PaidWrites) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn record_payment_failure(w: FailureWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn release_orders(w: ReleaseWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn refund_payment(w: RefundWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn finalize_listing(w: FinalizeWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn save_handover_part(p: HandoverPart) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn load_handover_part(r: HandoverPartRef) -> Result<String, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn drop_handover(listing: ListingKey) -> Result<(), ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn complete_step(w: StepWrite) -> Result<(), ActivityError> {
        unimplemented!()
    }
}

/// The activities' marker types, for the implementation to name as its definitions.
pub mod defs {
    pub use super::sell_window_activities::*;
}
