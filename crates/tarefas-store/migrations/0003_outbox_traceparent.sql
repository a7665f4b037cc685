-- The W3C trace context of the span that wrote each outbox row, so the relay can carry it in
-- the message's `traceparent` header and one run's trace spans scheduler → worker → Huggy.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
