-- Who froze a wallet: its owner may lift their own freeze; an admin's (or compliance's) freeze holds until an admin
-- lifts it. Wallets frozen before this migration are taken as frozen by an admin, the safe reading.
alter table wallet add column frozen_by text;
update wallet set frozen_by = 'admin' where status = 'frozen';
alter table wallet add constraint wallet_frozen_by_known
    check ((status = 'frozen' and frozen_by in ('owner', 'admin')) or (status <> 'frozen' and frozen_by is null));
