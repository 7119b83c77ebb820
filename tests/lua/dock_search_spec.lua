-- dock_search_spec.lua — dock.dock / vl.dock.search: Vina's Monte Carlo
-- search. References: the crystal poses of ../shared/data/complexes
-- (symmetry-aware heavy-atom RMSD with vl.dock.rmsd against ligand.sdf),
-- dock.score (Vina 1.2.3 scoring, checked against vina by
-- dock_scoring_spec) for every returned affinity, plain RMSDs computed here
-- for rmsd_ub and the clustering, Vina's rmsd_lb definition computed here.
-- Kept fast: small complexes, small exhaustiveness and steps_scale.
local vl = require "vl"
local dock = require "vl.dock"

local DATA = "../shared/data/complexes/"

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

local loaded = {}
local function complex(id)
  if not loaded[id] then
    local d = DATA .. id .. "/"
    loaded[id] = {rec = dock.receptor(d .. "receptor.pdbqt"), lig = dock.ligand(d .. "ligand.pdbqt"),
                  box = dock.box_from_file(d .. "box.txt"), chem = dock.read_sdf(d .. "ligand.sdf")[1]}
  end
  return loaded[id]
end

local function heavy(lig)
  local h = {}
  for i, a in ipairs(lig:atoms()) do if a.element ~= "H" then h[#h + 1] = i end end
  return h
end

local function plain_rmsd(lig, a, b)
  local h = heavy(lig)
  a, b = a:totable(), b:totable()
  local s = 0
  for _, i in ipairs(h) do for k = 1, 3 do s = s + (a[i][k] - b[i][k]) ^ 2 end end
  return math.sqrt(s / #h)
end

-- Vina's lower bound: each heavy atom to the nearest heavy atom of the same element
local function lb_rmsd(lig, a, b)
  local atoms, h = lig:atoms(), heavy(lig)
  a, b = a:totable(), b:totable()
  local function asym(x, y)
    local s = 0
    for _, i in ipairs(h) do
      local best = math.huge
      for _, j in ipairs(h) do
        if atoms[i].element == atoms[j].element then
          local d = (x[i][1] - y[j][1]) ^ 2 + (x[i][2] - y[j][2]) ^ 2 + (x[i][3] - y[j][3]) ^ 2
          if d < best then best = d end
        end
      end
      s = s + best
    end
    return math.sqrt(s / #h)
  end
  return math.max(asym(a, b), asym(b, a))
end

-- symmetry-aware RMSD to the crystal (SDF atoms matched to the PDBQT's by position)
local function crystal_rmsd(c, xyz)
  local cc, lc, t = c.chem:coords():totable(), c.lig:coords():totable(), xyz:totable()
  local pose = {}
  for k, p in ipairs(cc) do pose[k] = {p[1], p[2], p[3]} end
  for _, i in ipairs(heavy(c.lig)) do
    local best, bd = nil, math.huge
    for k, q in ipairs(cc) do
      local d = (lc[i][1] - q[1]) ^ 2 + (lc[i][2] - q[2]) ^ 2 + (lc[i][3] - q[3]) ^ 2
      if d < bd then best, bd = k, d end
    end
    assert(bd < 0.01, "crystal atom not matched")
    pose[best] = t[i]
  end
  -- bond orders ignored, as vina_reference.csv matches atoms
  return (dock.rmsd(c.chem, vl.tensor(cc, {dtype = "float64"}), vl.tensor(pose, {dtype = "float64"}), {ignore_orders = true}))
end

local FAST = {exhaustiveness = 2, steps_scale = 0.15, seed = 3}

describe("dock.dock", function()
  it("gives identical modes for a seed with 1 and 2 threads", function()
    local c = complex("184l")
    local o1, o2 = {threads = 1}, {threads = 2}
    for k, v in pairs(FAST) do o1[k], o2[k] = v, v end
    o1.exhaustiveness, o2.exhaustiveness = 3, 3
    local a = dock.dock(c.rec, c.lig, c.box, o1)
    local b = dock.dock(c.rec, c.lig, c.box, o2)
    assert.are.equal(#a, #b)
    for i = 1, #a do
      assert.are.equal(a[i].affinity, b[i].affinity)
      assert.are.same(a[i].coords:totable(), b[i].coords:totable())
      assert.are.same(a[i].tors, b[i].tors)
    end
    -- another seed explores differently
    o1.seed = 99
    local d = dock.dock(c.rec, c.lig, c.box, o1)
    local same = #d == #a
    for i = 1, math.min(#a, #d) do same = same and d[i].affinity == a[i].affinity end
    assert.is_false(same)
  end)

  it("redocks 4up5 from random starts within 2 Å of the crystal pose", function()
    local c = complex("4up5")
    local modes = dock.dock(c.rec, c.lig, c.box, {exhaustiveness = 4, steps_scale = 0.25, seed = 1})
    local r = crystal_rmsd(c, modes[1].coords)
    assert.is_true(r < 2, ("top mode %.2f Å from the crystal"):format(r))
    -- and the crystal pose itself is at RMSD 0 by the same measure
    assert.is_true(crystal_rmsd(c, c.lig:coords()) < 1e-6)
  end)

  -- The issue's bar: top-pose success on the 20 complexes at exhaustiveness 8,
  -- default options, at least Vina 1.2.3's in vina_reference.csv (14/20). Seed 1
  -- is fixed, so the result is deterministic (15/20 when written: Vina's 13
  -- successes but 5ia3, whose top pose sits at 2.00 +- 0.01 Å for every seed
  -- tried, plus 5ia3 and 7w2p). About a minute on 2 cores.
  it("redocks the 20 reference complexes at least as often as Vina 1.2.3 did", function()
    local reference = dofile("tests/lua/dock_reference.lua")
    local ref, ids = reference.by_id, reference.ids
    assert.are.equal(20, #ids)
    local vina_ok, ok, missed = 0, 0, {}
    for _, id in ipairs(ids) do
      local c = complex(id)
      local modes = dock.dock(c.rec, c.lig, c.box, {exhaustiveness = 8, seed = 1})
      local r = crystal_rmsd(c, modes[1].coords)
      if r < 2 then ok = ok + 1 else missed[#missed + 1] = ("%s %.2f Å"):format(id, r) end
      if ref[id].top_rmsd < 2 then vina_ok = vina_ok + 1 end
      loaded[id] = nil
    end
    assert.is_true(ok >= vina_ok, ("%d/20 within 2 Å, Vina %d/20; missed: %s"):format(ok, vina_ok, table.concat(missed, ", ")))
  end)

  it("saves evaluations with the BFGS safeguards; vina_bfgs = true runs Vina's BFGS; both redock 4up5", function()
    local c = complex("4up5")
    local o = {exhaustiveness = 2, steps_scale = 0.2, seed = 1, ftol = 0}
    local guarded, gi = dock.dock(c.rec, c.lig, c.box, o)
    o.vina_bfgs = true
    local vina, vi = dock.dock(c.rec, c.lig, c.box, o)
    -- same Monte Carlo steps, a third fewer evaluations (0.67 when written)
    assert.are.equal(gi.steps, vi.steps)
    assert.is_true(gi.evals < 0.8 * vi.evals, ("guarded %d evals, Vina's BFGS %d"):format(gi.evals, vi.evals))
    for name, modes in pairs({guarded = guarded, vina = vina}) do
      local r = crystal_rmsd(c, modes[1].coords)
      assert.is_true(r < 2, ("%s: top mode %.2f Å from the crystal"):format(name, r))
    end
    assert.is_true(math.abs(guarded[1].affinity - vina[1].affinity) < 0.1)
  end)

  it("returns affinities equal to dock.score of the poses, sorted, within energy_range, distinct", function()
    local c = complex("184l")
    local range = 2.5
    local modes, info = dock.dock(c.rec, c.lig, c.box,
      {exhaustiveness = 4, steps_scale = 0.2, seed = 5, energy_range = range, num_modes = 6})
    assert.is_true(#modes >= 2 and #modes <= 6)
    assert.is_true(info.evals > 0 and info.runs == 4)
    local n = c.lig:info().natoms
    for i, m in ipairs(modes) do
      assert.are.same({n, 3}, m.coords.shape)
      local s = dock.score(c.rec, c.lig, {box = c.box, coords = m.coords, unbound = modes[1].intra})
      assert.is_true(math.abs(s.affinity - m.affinity) < 1e-9, ("mode %d: %.9f vs dock.score %.9f"):format(i, m.affinity, s.affinity))
      assert.is_true(math.abs(s.inter - m.inter) < 1e-9 and math.abs(s.intra - m.intra) < 1e-9)
      -- the per-term breakdown is dock.score's too
      for _, k in ipairs {"gauss1", "gauss2", "repulsion", "hydrophobic", "hbond"} do
        assert.is_true(math.abs(s.terms[k] - m.terms[k]) < 1e-9, k)
        assert.is_true(math.abs(s.intra_terms[k] - m.intra_terms[k]) < 1e-9, k)
      end
      -- the pose variables reproduce the coordinates
      local xyz = c.lig:pose_coords(m.pos, m.q, m.tors)
      assert.is_true(plain_rmsd(c.lig, xyz, m.coords) < 1e-9)
      if i > 1 then
        assert.is_true(m.affinity >= modes[i - 1].affinity, "modes not sorted")
        assert.is_true(m.affinity <= modes[1].affinity + range, "mode outside energy_range")
      end
      for j = 1, i - 1 do
        assert.is_true(plain_rmsd(c.lig, m.coords, modes[j].coords) >= 1, ("modes %d and %d closer than 1 Å"):format(j, i))
      end
      assert.is_true(math.abs(m.rmsd_ub - plain_rmsd(c.lig, m.coords, modes[1].coords)) < 1e-9)
      assert.is_true(math.abs(m.rmsd_lb - lb_rmsd(c.lig, m.coords, modes[1].coords)) < 1e-9)
      assert.is_true(m.rmsd_lb <= m.rmsd_ub + 1e-12)
    end
    assert.are.equal(0, modes[1].rmsd_lb)
    assert.are.equal(0, modes[1].rmsd_ub)
    -- the best mode's affinity is score_only's (unbound = its own intra)
    local s1 = dock.score(c.rec, c.lig, {box = c.box, coords = modes[1].coords})
    assert.is_true(math.abs(s1.affinity - modes[1].affinity) < 1e-9)
    -- num_modes = 1 keeps only the best
    local one = dock.dock(c.rec, c.lig, c.box, {exhaustiveness = 2, steps_scale = 0.1, seed = 5, num_modes = 1})
    assert.are.equal(1, #one)
  end)

  it("stops runs at max_evals", function()
    local c = complex("184l")
    local _, full = dock.dock(c.rec, c.lig, c.box, {exhaustiveness = 2, steps_scale = 0.1, seed = 2})
    local _, cut = dock.dock(c.rec, c.lig, c.box, {exhaustiveness = 2, steps_scale = 0.1, seed = 2, max_evals = 2000})
    assert.is_true(cut.evals < full.evals)
    assert.is_true(cut.evals <= 2 * (2000 + 2000), "evals " .. cut.evals)
  end)

  it("writes the modes as a PDBQT that reads back", function()
    local c = complex("184l")
    local modes = dock.dock(c.rec, c.lig, c.box, FAST)
    local path = os.tmpname()
    dock.write_poses(path, c.lig, modes)
    local back = dock.read_ligands(path)
    os.remove(path)
    assert.are.equal(#modes, #back)
    for i = 1, #modes do
      assert.is_true(plain_rmsd(c.lig, back[i]:coords(), modes[i].coords) < 2e-3)
    end
  end)

  it("refuses bad options with clear errors", function()
    local c = complex("184l")
    fails("unknown option 'exhaustivness'", dock.dock, c.rec, c.lig, c.box, {exhaustivness = 4})
    fails("option 'exhaustiveness' = 0 out of range", dock.dock, c.rec, c.lig, c.box, {exhaustiveness = 0})
    fails("option 'num_modes' = 0 out of range", dock.dock, c.rec, c.lig, c.box, {num_modes = 0})
    fails("option 'energy_range'", dock.dock, c.rec, c.lig, c.box, {energy_range = -1})
    fails("option 'exhaustiveness' must be an integer", dock.dock, c.rec, c.lig, c.box, {exhaustiveness = 1.5})
    fails("option 'max_evals'", dock.dock, c.rec, c.lig, c.box, {max_evals = -3})
    fails("option 'steps_scale'", dock.dock, c.rec, c.lig, c.box, {steps_scale = 0})
    fails("option 'vina_bfgs'", dock.dock, c.rec, c.lig, c.box, {vina_bfgs = 3})
    fails("options must be a table", vl.dock.search, dock.scorer(c.rec, c.box), c.lig, 5)
    fails("is a receptor", vl.dock.search, dock.scorer(c.rec, c.box), c.rec)
    fails("dock.dock: box must be a table", dock.dock, c.rec, c.lig, 3)
    fails("dock.write_poses: poses must be a non-empty array", dock.write_poses, os.tmpname(), c.lig, {})
  end)
end)
