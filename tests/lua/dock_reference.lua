-- dock_reference.lua — ../shared/data/complexes/vina_reference.csv (AutoDock
-- Vina 1.2.3's redocking results on the 20 reference complexes, see its
-- README) as {by_id = {[pdbid] = row}, ids = {pdbid, ...}} with numeric
-- columns as numbers. Loaded by the dock specs with dofile.
local path = "../shared/data/complexes/vina_reference.csv"
local f = assert(io.open(path), "cannot open " .. path)
local head, by_id, ids = nil, {}, {}
for line in f:lines() do
  local cols = {}
  for v in line:gmatch("[^,]+") do cols[#cols + 1] = v end
  if not head then
    head = cols
  elseif #cols > 0 then
    local r = {}
    for k, h in ipairs(head) do r[h] = tonumber(cols[k]) or cols[k] end
    by_id[r.pdbid], ids[#ids + 1] = r, r.pdbid
  end
end
f:close()
return {by_id = by_id, ids = ids}
