*ÂïvB
int4_typed