-- vl.dock — molecular docking with AutoDock Vina's scoring function.
--
--   local dock = require "vl.dock"
--   local rec = dock.receptor("receptor.pdbqt")
--   local lig = dock.ligand("ligand.pdbqt")            -- first MODEL; dock.read_ligands for all
--   local box = dock.box_from_file("box.txt")          -- or dock.box{center = {x,y,z}, size = {x,y,z}}
--   local s = dock.score(rec, lig, {box = box})        -- vina --score_only
--   print(s.affinity, s.inter, s.intra, s.terms.gauss1)
--   local r = dock.local_only(rec, lig, box)           -- vina --local_only
--   print(r.affinity, r.coords)                        -- optimised pose, [n, 3] tensor
--
-- Scores follow Vina 1.2.3 exactly: method "vina" (default) uses Vina's
-- tabulated pair energies with explicit receptor atoms, as --score_only
-- does; "exact" the analytic functions; "grid" Vina's grid maps
-- (--no_refine). A scorer (receptor + box + tables + maps) is made once
-- per receptor and box and reused: dock.scorer(rec, box).
local vl = require "vl"
local M = vl.dock

-- the C constructor, kept before M.scorer (cached) takes its name
local raw_scorer = rawget(M, "raw_scorer") or M.scorer
M.raw_scorer = raw_scorer

local function check_box(box, where)
  if type(box) ~= "table" or type(box.center) ~= "table" or type(box.size) ~= "table" then
    error(where .. ": box must be a table {center = {x, y, z}, size = {x, y, z}} (see dock.box)", 3)
  end
  return box
end

--- dock.box{center = {x,y,z}, size = {x,y,z}, spacing = 0.375} -> box
function M.box(t)
  if type(t) ~= "table" then error("dock.box: expected a table {center = {x,y,z}, size = {x,y,z}}", 2) end
  local function vec3(v, name)
    if type(v) ~= "table" or #v ~= 3 then error("dock.box: " .. name .. " must be a table of 3 numbers", 3) end
    for i = 1, 3 do
      if type(v[i]) ~= "number" then error("dock.box: " .. name .. "[" .. i .. "] is not a number", 3) end
    end
    return {v[1], v[2], v[3]}
  end
  local b = {center = vec3(t.center, "center"), size = vec3(t.size, "size"), spacing = t.spacing or 0.375}
  for i = 1, 3 do
    if not (b.size[i] > 0) then error(("dock.box: size[%d] = %s (expected > 0)"):format(i, tostring(b.size[i])), 2) end
  end
  return b
end

--- dock.box_from_file(path) -> box, from Vina's config syntax (center_x = ..., size_x = ...)
function M.box_from_file(path)
  local f, err = io.open(path, "r")
  if not f then error("dock.box_from_file: cannot open " .. tostring(err), 2) end
  local v, n = {}, 0
  for line in f:lines() do
    n = n + 1
    local s = line:gsub("#.*", "")
    if s:match("%S") then
      local k, val = s:match("^%s*([%w_]+)%s*=%s*(%S+)%s*$")
      if not k then f:close(); error(("%s:%d: expected 'key = value'"):format(path, n), 2) end
      local num = tonumber(val)
      if k:match("^center_[xyz]$") or k:match("^size_[xyz]$") or k == "spacing" then
        if not num then f:close(); error(("%s:%d: %s = '%s' is not a number"):format(path, n, k, val), 2) end
        v[k] = num
      end
    end
  end
  f:close()
  for _, k in ipairs {"center_x", "center_y", "center_z", "size_x", "size_y", "size_z"} do
    if not v[k] then error(("%s: missing %s"):format(path, k), 2) end
  end
  return M.box {center = {v.center_x, v.center_y, v.center_z}, size = {v.size_x, v.size_y, v.size_z},
                spacing = v.spacing}
end

--- dock.receptor(path) -> Molecule (rigid receptor PDBQT)
function M.receptor(path) return M.read_receptor(path) end

--- dock.ligand(path, {model = 1}) -> Molecule[, atom map]
-- A PDBQT gives its MODEL `model` with the torsion tree as written. An SDF, MOL or
-- MOL2 gives its record `model` prepared by chem:prepare() (bonds, aromaticity,
-- implicit hydrogens, torsion tree, types), and the map from the Molecule's atoms
-- to the record's as a second value.
function M.ligand(path, opts)
  if type(path) ~= "string" then error("dock.ligand: expected a path, got " .. type(path), 2) end
  local k = opts and opts.model or 1
  local ext = (path:match("%.([^./]+)$") or ""):lower()
  if ext == "sdf" or ext == "mol" or ext == "mol2" then
    local all = ext == "mol2" and M.read_mol2(path) or M.read_sdf(path)
    if not all[k] then error(("dock.ligand: %s has %d record(s), no record %s"):format(path, #all, tostring(k)), 2) end
    return all[k]:prepare()
  end
  local all = M.read_ligands(path)
  if not all[k] then error(("dock.ligand: %s has %d model(s), no model %s"):format(path, #all, tostring(k)), 2) end
  return all[k]
end

-- Scorers cached per receptor (weakly) and box.
local cache = setmetatable({}, {__mode = "k"})

local function box_key(b)
  return ("%.6f %.6f %.6f %.6f %.6f %.6f %.6f"):format(b.center[1], b.center[2], b.center[3], b.size[1], b.size[2],
    b.size[3], b.spacing or 0.375)
end

--- dock.scorer(rec, box) -> Scorer (reused for the same receptor and box)
function M.scorer(rec, box, opts)
  check_box(box, "dock.scorer")
  if opts and opts.weights then return raw_scorer(rec, box, opts) end
  local per = cache[rec]
  if not per then per = {}; cache[rec] = per end
  local key = box_key(box)
  local s = per[key]
  if not s then s = raw_scorer(rec, box); per[key] = s end
  return s
end

--- dock.score(rec, lig, {box, method = "vina", coords}) -> {affinity, inter, intra, terms, ...}
function M.score(rec, lig, opts)
  opts = opts or {}
  local box = opts.box
  if not box then error("dock.score: option 'box' is required (dock.box{center, size} or dock.box_from_file)", 2) end
  local s = M.scorer(rec, check_box(box, "dock.score"))
  return s:score(lig, {method = opts.method, coords = opts.coords, unbound = opts.unbound})
end

--- dock.local_only(rec, lig, box, {method = "grid", score_method = "vina", max_steps, rounds})
--    -> score table + coords, pos, q, tors (Vina's --local_only: BFGS on the grid maps, explicit final score)
function M.local_only(rec, lig, box, opts)
  local s = M.scorer(rec, check_box(box, "dock.local_only"))
  opts = opts or {}
  return s:local_opt(lig, {method = opts.method, score_method = opts.score_method, max_steps = opts.max_steps, rounds = opts.rounds,
                           pos = opts.pos, q = opts.q, tors = opts.tors})
end

--- dock.dock(rec, lig, box, {exhaustiveness = 8, seed = 0, num_modes = 9, energy_range = 3, threads, max_evals, ...})
--    -> {{affinity, inter, intra, terms, intra_terms, rmsd_lb, rmsd_ub, coords = [n,3] (the Molecule's order), pos, q, tors}, ...}, info
-- Vina's Monte Carlo search (vl.dock.search, ops/dock/search.c); seed 0 by default (fixed, not time based).
function M.dock(rec, lig, box, opts)
  local s = M.scorer(rec, check_box(box, "dock.dock"))
  return M.search(s, lig, opts)
end

--- dock.write_poses(path, lig, poses) -- the modes of dock.dock as a Vina-style PDBQT (one MODEL each)
function M.write_poses(path, lig, poses)
  if type(poses) ~= "table" or #poses == 0 then error("dock.write_poses: poses must be a non-empty array (from dock.dock)", 2) end
  local xyz, scores = {}, {}
  for i, p in ipairs(poses) do
    xyz[i] = p.coords
    scores[i] = {p.affinity, p.rmsd_lb or 0, p.rmsd_ub or 0}
  end
  return M.write_pdbqt(path, lig, {poses = vl.stack(xyz), scores = scores})
end

-- screening (stdlib/vl/dock/screen.lua): dock.library, dock.box_around, dock.screen, dock.dock_local
for k, v in pairs(require "vl.dock.screen") do
  if k ~= "csv_columns" and k ~= "library_size" then M[k] = v end
end
-- dock.ligands(library): the streaming iterator over a library (the issue's name;
-- dock.read_ligands(path) gives every MODEL of one PDBQT as a table)
M.ligands = M.library

return M
