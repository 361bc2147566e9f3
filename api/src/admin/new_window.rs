//! An admin's request for a new sell window, checked: when it closes, its id, and each listing's
//! product, quantities, payment window and policy, made into what the store records and what the
//! listing's workflow starts with.

use super::{DEFAULT_PAYMENT_WINDOW_MS, MAX_LISTINGS, MAX_PAYMENT_WINDOW_MS};
use crate::app::State;
use crate::convert::{self, text};
use crate::error::ApiError;
use crate::pb;
use sellwindow_domain::*;
use sellwindow_store::queries::NewListing;

/// The window a request describes, checked: what each of its listings belongs to.
pub(super) struct NewWindow {
    pub id: SellWindowId,
    pub name: String,
    pub close_at: UnixMillis,
}

/// Each listing as the store records it (beside its workflow's id), and as its workflow starts.
pub(super) struct NewListings {
    pub rows: Vec<(NewListing, String)>,
    pub specs: Vec<ListingSpec>,
}

impl NewWindow {
    /// The request's window: a name, a close in the future, 1 to `MAX_LISTINGS` listings. Its id
    /// comes from the admin and the request id, so a retried create is the same window.
    pub(super) fn checked(
        r: &pb::CreateSellWindowRequest,
        admin: &str,
        now: UnixMillis,
    ) -> Result<Self, ApiError> {
        let name = text("name", &r.name, 200)?;
        let close_at = r
            .close_at
            .as_ref()
            .ok_or(DomainError::invalid("close_at", "is required"))
            .and_then(|t| {
                convert::ms_of_parts(t.seconds, t.nanos)
                    .ok_or(DomainError::invalid("close_at", "is out of range"))
            })
            .map(UnixMillis)?;
        if close_at.0 <= now.0 + 1000 {
            return Err(DomainError::invalid("close_at", "must be in the future").into());
        }
        if r.listings.is_empty() || r.listings.len() > MAX_LISTINGS {
            return Err(DomainError::invalid(
                "listings",
                format!("between 1 and {MAX_LISTINGS} listings"),
            )
            .into());
        }
        let id = if r.request_id.is_empty() {
            SellWindowId::derive(&[admin, &name, &now.0.to_string()])
        } else {
            SellWindowId::derive(&[admin, &text("request_id", &r.request_id, 128)?])
        };
        Ok(Self { id, name, close_at })
    }
}

impl State {
    /// Every listing of the request, checked in order; a product listed twice is refused.
    pub(super) async fn checked_listings(
        &self,
        window: &NewWindow,
        inputs: &[pb::ListingInput],
    ) -> Result<NewListings, ApiError> {
        let mut listings = NewListings {
            rows: Vec::new(),
            specs: Vec::new(),
        };
        for input in inputs {
            let product_id = ProductId::parse(input.product_id.clone())?;
            if listings
                .rows
                .iter()
                .any(|(listed, _)| listed.product_id == product_id)
            {
                return Err(DomainError::invalid(
                    "listings",
                    format!("product {product_id} listed twice"),
                )
                .into());
            }
            let (row, spec) = self.checked_listing(window, product_id, input).await?;
            listings.rows.push((row, spec.workflow_id()));
            listings.specs.push(spec);
        }
        Ok(listings)
    }

    /// One listing: its product must exist, and its quantities, payment window and policy make
    /// sense.
    async fn checked_listing(
        &self,
        window: &NewWindow,
        product_id: ProductId,
        input: &pb::ListingInput,
    ) -> Result<(NewListing, ListingSpec), ApiError> {
        let product = self
            .store
            .product(&product_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("product {product_id} not found")))?;
        check_quantities(input)?;
        let payment_window_ms = payment_window_ms(input)?;
        let per_customer_limit = (input.per_customer_limit > 0).then_some(input.per_customer_limit);
        let min_paid_policy = convert::parse_policy(input.min_paid_policy)?;
        let row = NewListing {
            product_id: product_id.clone(),
            min_qty: input.min_qty,
            max_qty: input.max_qty,
            payment_window_ms,
            per_customer_limit,
            min_paid_policy,
        };
        let spec = ListingSpec {
            sell_window_id: window.id.clone(),
            sell_window_name: window.name.clone(),
            product_id,
            product_name: product.name,
            unit_price: product.unit_price,
            min_qty: input.min_qty,
            max_qty: input.max_qty,
            close_at: window.close_at,
            payment_window_ms,
            per_customer_limit,
            min_paid_policy,
            work_steps: product.work_steps,
        };
        Ok((row, spec))
    }
}

/// A threshold of at least 1, and a cap between it and the most a listing may sell.
fn check_quantities(input: &pb::ListingInput) -> Result<(), ApiError> {
    if input.min_qty == 0 {
        return Err(DomainError::invalid("min_qty", "must be at least 1").into());
    }
    if input.max_qty < input.min_qty || input.max_qty > Qty::MAX {
        return Err(DomainError::invalid(
            "max_qty",
            format!("must be between min_qty and {}", Qty::MAX),
        )
        .into());
    }
    Ok(())
}

/// How long a customer has to pay once asked: a day unless given, 1 second to 30 days.
fn payment_window_ms(input: &pb::ListingInput) -> Result<i64, ApiError> {
    let payment_window_ms = match &input.payment_window {
        None => DEFAULT_PAYMENT_WINDOW_MS,
        Some(d) => convert::ms_of_parts(d.seconds, d.nanos)
            .ok_or(DomainError::invalid("payment_window", "is out of range"))?,
    };
    if !(1000..=MAX_PAYMENT_WINDOW_MS).contains(&payment_window_ms) {
        return Err(
            DomainError::invalid("payment_window", "must be between 1 second and 30 days").into(),
        );
    }
    Ok(payment_window_ms)
}
