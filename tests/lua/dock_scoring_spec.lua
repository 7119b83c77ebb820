-- dock_scoring_spec.lua — vl.dock: PDBQT molecules and AutoDock Vina's
-- scoring function. References: AutoDock Vina 1.2.3's own output on the
-- 20 complexes of ../shared/data/complexes, saved by
-- scripts/fixtures/vina_score.py in tests/fixtures/dock/vina_score.lua
-- (score_only, score_only --no_refine, local_only, and per-term sums from
-- single-weight runs); closed forms of the terms; central differences for
-- every gradient (atoms, pose variables, grid maps).
local vl = require "vl"
local dock = require "vl.dock"

local DATA = "../shared/data/complexes/"
local fx = dofile("tests/fixtures/dock/vina_score.lua")
local TERMS = {"gauss1", "gauss2", "repulsion", "hydrophobic", "hbond"}

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

local function close(got, want, tol, what)
  if not (math.abs(got - want) <= tol) then
    error(("%s: got %.6f, want %.6f (tol %g)"):format(what, got, want, tol), 2)
  end
end

local loaded = {}
local function complex(c)
  if not loaded[c.id] then
    local d = DATA .. c.id .. "/"
    loaded[c.id] = {rec = dock.receptor(d .. "receptor.pdbqt"), lig = dock.ligand(d .. "ligand.pdbqt"),
                    box = dock.box{center = c.center, size = c.size}}
  end
  return loaded[c.id]
end

local function by_id(id)
  for _, c in ipairs(fx) do if c.id == id then return c end end
end

local function write_tmp(text)
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write(text)
  f:close()
  return p
end

describe("dock.score against vina --score_only (all 20 complexes)", function()
  for _, c in ipairs(fx) do
    it(c.id .. ": affinity, inter, intra and per-term sums", function()
      local m = complex(c)
      local s = dock.score(m.rec, m.lig, {box = m.box})
      -- Vina prints 3 decimals: 0.0005 is its rounding; the issue asks 0.01 / 0.05
      close(s.inter, c.inter, 0.0006, c.id .. " inter")
      close(s.intra, c.intra, 0.0006, c.id .. " intra")
      close(s.affinity, c.affinity, 0.0006, c.id .. " affinity")
      close(s.torsional, c.torsional, 0.0011, c.id .. " torsional")
      for k, name in ipairs(TERMS) do
        close(s.terms[name], c.terms[k], 2e-6, c.id .. " inter " .. name)
        close(s.intra_terms[name], c.intra_terms[k], 2e-6, c.id .. " intra " .. name)
      end
    end)
  end

  it("exact (analytic) scoring stays within 0.02 of Vina's tables", function()
    for _, c in ipairs(fx) do
      local m = complex(c)
      local s = dock.score(m.rec, m.lig, {box = m.box, method = "exact"})
      close(s.inter, c.inter, 0.02, c.id .. " exact inter")
      close(s.intra, c.intra, 0.01, c.id .. " exact intra")
    end
  end)

  it("the same scorer serves several ligands and keeps the receptor alive", function()
    local c = fx[1]
    local m = complex(c)
    local sc = dock.scorer(m.rec, m.box)
    assert.are.equal(sc, dock.scorer(m.rec, dock.box{center = c.center, size = c.size}))
    local a = sc:score(m.lig)
    local b = sc:score(m.lig, {coords = m.lig:coords()})
    assert.are.equal(a.affinity, b.affinity)
  end)
end)

describe("grid maps against vina --score_only --no_refine", function()
  for _, id in ipairs {"184l", "1iep", "4up5"} do
    it(id, function()
      local c = by_id(id)
      local m = complex(c)
      local s = dock.score(m.rec, m.lig, {box = m.box, method = "grid"})
      close(s.inter, c.grid.inter, 0.0006, id .. " grid inter")
      close(s.affinity, c.grid.affinity, 0.0006, id .. " grid affinity")
      close(s.intra, c.grid.intra, 0.0006, id .. " grid intra")
    end)
  end

  it("maps are the same whatever the thread count", function()
    local c = by_id("4up5")
    local m = complex(c)
    local before = vl.get_num_threads and vl.get_num_threads() or 2
    local e = {}
    for _, n in ipairs {1, 2} do
      vl.set_num_threads(n)
      local sc = dock.raw_scorer(m.rec, m.box) -- a fresh scorer, no cached maps
      e[n] = sc:score(m.lig, {method = "grid"}).inter
    end
    vl.set_num_threads(before)
    assert.are.equal(e[1], e[2])
  end)

  it("trilinear map gradient matches central differences inside a voxel", function()
    local c = by_id("184l")
    local m = complex(c)
    local sc = dock.scorer(m.rec, m.box)
    sc:grids {"C_H", "O_A"}
    local b = sc:box()
    for _, t in ipairs {"C_H", "O_A"} do
      for k = 1, 5 do
        local p = {}
        for d = 1, 3 do p[d] = b.lo[d] + (3 * k + d + 0.37) * b.spacing end
        local e, g = sc:grid_value(t, p)
        for d = 1, 3 do
          local h = 1e-5
          local pp, pm = {p[1], p[2], p[3]}, {p[1], p[2], p[3]}
          pp[d], pm[d] = p[d] + h, p[d] - h
          local fd = (sc:grid_value(t, pp) - sc:grid_value(t, pm)) / (2 * h)
          close(g[d], fd, 1e-5 * (1 + math.abs(fd)), t .. " grid d/dx" .. d)
        end
        assert.is_true(e == e)
      end
    end
  end)
end)

describe("dock.local_only against vina --local_only", function()
  for _, id in ipairs {"184l", "1iep", "6moa", "1uw6"} do
    it(id, function()
      local c = by_id(id)
      local m = complex(c)
      local r = dock.local_only(m.rec, m.lig, m.box)
      close(r.affinity, c.local_only.affinity, 0.05, id .. " local affinity")
      close(r.inter, c.local_only.inter, 0.05, id .. " local inter")
      -- the optimised pose against Vina's output pose (file order, all atoms)
      local xyz = r.coords:totable()
      local atoms = m.lig:atoms()
      local sum = 0
      for i, a in ipairs(atoms) do
        for d = 1, 3 do
          local v = c.local_xyz[3 * (a.order - 1) + d]
          sum = sum + (xyz[i][d] - v) ^ 2
        end
      end
      local rmsd = math.sqrt(sum / #atoms)
      assert.is_true(rmsd < 0.05, id .. " pose RMSD to Vina's " .. rmsd)
      assert.is_true(r.affinity < dock.score(m.rec, m.lig, {box = m.box}).affinity)
    end)
  end
end)

-- Vina 1.2.3 subtracts from every docked mode the intramolecular energy of the
-- last pose it kept (printed or cut by energy_range), not of the best one
-- (fixed upstream after 1.2.3: ccsb-scripps/AutoDock-Vina pull request #81).
-- dock.dock follows the stated rule (the best mode's), so Vina 1.2.3's printed
-- affinities are dock.score's with the best mode's intra as unbound plus one
-- constant per ligand; where the last printed mode is the last kept pose
-- (1s3v), that mode's intra gives Vina's numbers exactly. Vina's output:
-- tests/fixtures/dock/vina_out (scripts/fixtures/dock_vina_out.sh).
describe("Vina 1.2.3's docked affinities", function()
  local function printed(path)
    local t = {}
    for line in io.lines(path) do
      local a = line:match("^REMARK VINA RESULT:%s+(%S+)")
      if a then t[#t + 1] = tonumber(a) end
    end
    return t
  end

  it("are dock.score's plus one unbound shift per ligand (the last kept pose's intra)", function()
    for _, id in ipairs {"1s3v", "5ia3", "1uw6"} do
      local path = "tests/fixtures/dock/vina_out/" .. id .. ".pdbqt"
      local vina = printed(path)
      local m = complex(by_id(id))
      local modes = dock.read_ligands(path)
      assert.are.equal(#vina, #modes)
      local best = dock.score(m.rec, modes[1], {box = m.box})
      local shift
      for i, pose in ipairs(modes) do
        local s = dock.score(m.rec, pose, {box = m.box, unbound = best.intra})
        shift = shift or vina[1] - s.affinity
        -- Vina prints 3 decimals of coordinates and affinities
        close(vina[i] - s.affinity, shift, 0.01, id .. " mode " .. i .. " shift")
      end
      if id == "1s3v" then
        local last = dock.score(m.rec, modes[#modes], {box = m.box})
        for i, pose in ipairs(modes) do
          close(dock.score(m.rec, pose, {box = m.box, unbound = last.intra}).affinity, vina[i], 0.01, id .. " mode " .. i)
        end
        assert.is_true(shift < -0.1) -- not a rounding effect
      end
    end
  end)
end)

describe("Vina's pair terms (closed forms)", function()
  it("at chosen surface distances", function()
    local R = dock.xs_radius("C_H") + dock.xs_radius("O_A") -- 3.6
    local t = dock.pair_terms("C_H", "O_A", R)
    close(t[1], 1, 1e-15, "gauss1 at d = 0")
    close(t[2], math.exp(-2.25), 1e-15, "gauss2 at d = 0")
    close(t[3], 0, 0, "repulsion at d = 0")
    t = dock.pair_terms("C_H", "O_A", R - 0.3)
    close(t[3], 0.09, 1e-12, "repulsion at d = -0.3")
    t = dock.pair_terms("C_H", "C_H", 3.8 + 1.0)
    close(t[4], 0.5, 1e-12, "hydrophobic half way")
    close(t[5], 0, 0, "no hbond between carbons")
    t = dock.pair_terms("N_D", "O_A", 3.5 - 0.35)
    close(t[5], 0.5, 1e-12, "hbond half way")
    t = dock.pair_terms("O_A", "O_A", 3.0)
    close(t[5], 0, 0, "two acceptors do not hbond")
    t = dock.pair_terms("C_H", "C_H", 8.0)
    for k = 1, 5 do close(t[k], 0, 0, "cutoff at 8") end
  end)

  it("derivatives match central differences", function()
    for _, pr in ipairs {{"C_H", "C_H"}, {"N_D", "O_A"}, {"C_P", "Met_D"}} do
      for _, r in ipairs {2.1, 3.3, 3.77, 4.6, 6.2} do
        local _, d = dock.pair_terms(pr[1], pr[2], r)
        local h = 1e-6
        local tp = dock.pair_terms(pr[1], pr[2], r + h)
        local tm = dock.pair_terms(pr[1], pr[2], r - h)
        for k = 1, 5 do close(d[k], (tp[k] - tm[k]) / (2 * h), 1e-6, pr[1] .. "-" .. pr[2] .. " term " .. k) end
      end
    end
  end)
end)

-- random-ish but fixed perturbation of coordinates
local function jitter(t, scale)
  local x = t:clone()
  local n = x:size(1)
  local v = x:totable()
  local out = {}
  for i = 1, n do
    for d = 1, 3 do out[#out + 1] = v[i][d] + scale * math.sin(7.1 * i + 3.3 * d) end
  end
  return vl.tensor(out, {dtype = "float64"}):view {n, 3}
end

describe("gradients against central differences (exact method)", function()
  it("dE/dxyz of inter + intra", function()
    local c = by_id("1uw6")
    local m = complex(c)
    local sc = dock.scorer(m.rec, m.box)
    local x = jitter(m.lig:coords(), 0.15)
    local _, _, g = sc:energy(m.lig, x, {method = "exact"})
    local gt, xt = g:totable(), x:totable()
    local n = #xt
    local h = 1e-6
    local worst = 0
    for i = 1, n, 2 do
      for d = 1, 3 do
        local xp, xm = x:clone(), x:clone()
        local vp, vm = {}, {}
        for a = 1, n do vp[a] = {xt[a][1], xt[a][2], xt[a][3]}; vm[a] = {xt[a][1], xt[a][2], xt[a][3]} end
        vp[i][d] = vp[i][d] + h
        vm[i][d] = vm[i][d] - h
        local flat = function(v) local f = {} for a = 1, n do for k = 1, 3 do f[#f + 1] = v[a][k] end end return f end
        xp = vl.tensor(flat(vp), {dtype = "float64"}):view {n, 3}
        xm = vl.tensor(flat(vm), {dtype = "float64"}):view {n, 3}
        local ip, ap = sc:energy(m.lig, xp, {method = "exact"})
        local im, am = sc:energy(m.lig, xm, {method = "exact"})
        local fd = ((ip + ap) - (im + am)) / (2 * h)
        worst = math.max(worst, math.abs(fd - gt[i][d]))
        close(gt[i][d], fd, 1e-5 * (1 + math.abs(fd)), "atom " .. i .. " d" .. d)
      end
    end
    assert.is_true(worst < 1e-4)
  end)

  it("dE/d(position, orientation, torsions) of a pose", function()
    for _, id in ipairs {"184l", "1iep"} do
      local c = by_id(id)
      local m = complex(c)
      local sc = dock.scorer(m.rec, m.box)
      local pos, q, tors = m.lig:pose_identity()
      -- move off the crystal pose so every term and the torsions matter
      pos[1] = pos[1] + 0.2
      for k = 1, #tors do tors[k] = 0.3 * math.sin(k) end
      local opt = {method = "exact"}
      local _, g = sc:pose_energy(m.lig, pos, q, tors, opt)
      assert.are.equal(6 + #tors, #g)
      local h = 1e-6
      local function E(p, qq, t) return (sc:pose_energy(m.lig, p, qq, t, opt)) end
      for d = 1, 3 do
        local pp, pm = {pos[1], pos[2], pos[3]}, {pos[1], pos[2], pos[3]}
        pp[d], pm[d] = pos[d] + h, pos[d] - h
        close(g[d], (E(pp, q, tors) - E(pm, q, tors)) / (2 * h), 1e-5 * (1 + math.abs(g[d])), id .. " position " .. d)
      end
      -- orientation: a small rotation about axis d applied on the left of q
      local function rotq(qq, d, a)
        local u = {0, 0, 0}
        u[d] = math.sin(a / 2)
        local w = math.cos(a / 2)
        local r = {w * qq[1] - u[1] * qq[2] - u[2] * qq[3] - u[3] * qq[4],
                   w * qq[2] + u[1] * qq[1] + u[2] * qq[4] - u[3] * qq[3],
                   w * qq[3] - u[1] * qq[4] + u[2] * qq[1] + u[3] * qq[2],
                   w * qq[4] + u[1] * qq[3] - u[2] * qq[2] + u[3] * qq[1]}
        return r
      end
      for d = 1, 3 do
        local fd = (E(pos, rotq(q, d, h), tors) - E(pos, rotq(q, d, -h), tors)) / (2 * h)
        close(g[3 + d], fd, 1e-5 * (1 + math.abs(fd)), id .. " orientation " .. d)
      end
      for k = 1, #tors do
        local tp, tm = {table.unpack(tors)}, {table.unpack(tors)}
        tp[k], tm[k] = tors[k] + h, tors[k] - h
        local fd = (E(pos, q, tp) - E(pos, q, tm)) / (2 * h)
        close(g[6 + k], fd, 1e-5 * (1 + math.abs(fd)), id .. " torsion " .. k)
      end
    end
  end)

  it("the vina-table gradient follows the exact one (except Vina's 8 Å cutoff spikes)", function()
    -- Vina's terms jump at the 8 Å cutoff (gauss2 is about 0.7 there), and
    -- its table turns the jump into a derivative spike within 0.004 Å of
    -- it; atoms with a receptor pair in that band differ, the rest agree.
    local c = by_id("1iep")
    local m = complex(c)
    local sc = dock.scorer(m.rec, m.box)
    local x = jitter(m.lig:coords(), 0.1)
    local _, _, ge = sc:energy(m.lig, x, {method = "exact"})
    local _, _, gv = sc:energy(m.lig, x, {method = "vina"})
    local a, b = ge:totable(), gv:totable()
    local good = 0
    for i = 1, #a do
      local ok = true
      for d = 1, 3 do
        if math.abs(a[i][d] - b[i][d]) > 0.01 + 0.02 * math.abs(a[i][d]) then ok = false end
      end
      if ok then good = good + 1 end
    end
    assert.is_true(good >= 0.75 * #a, ("%d of %d atoms agree"):format(good, #a))
  end)
end)

describe("torsion trees and poses", function()
  it("ROOT/BRANCH layout, atoms each torsion moves, identity pose", function()
    local m = complex(by_id("184l"))
    local info = m.lig:info()
    assert.are.equal(10, info.natoms)
    assert.are.equal(2, info.ntorsions)
    assert.are.equal(2, info.torsdof)
    local t = m.lig:torsions()
    assert.are.equal(3, #t)
    assert.are.equal(0, t[1].parent)
    -- BRANCH 1 7 moves atoms 8, 9, 10 (file serials), BRANCH 7 8 moves 9 and 10
    local atoms = m.lig:atoms()
    local function serials(list)
      local s = {}
      for _, i in ipairs(list) do s[#s + 1] = atoms[i].serial end
      table.sort(s)
      return table.concat(s, ",")
    end
    assert.are.equal("8,9,10", serials(t[2].moves))
    assert.are.equal("9,10", serials(t[3].moves))
    assert.are.equal(1, atoms[t[2].axis_from].serial)
    assert.are.equal(7, atoms[t[2].axis_to].serial)
    local pos, q, tors = m.lig:pose_identity()
    local x0, x1 = m.lig:coords():totable(), m.lig:pose_coords(pos, q, tors):totable()
    for i = 1, #x0 do for d = 1, 3 do close(x1[i][d], x0[i][d], 1e-12, "identity pose") end end
  end)

  it("a torsion keeps bond lengths and moves only its atoms", function()
    local m = complex(by_id("1iep"))
    local pos, q, tors = m.lig:pose_identity()
    tors[2] = 1.0
    local x0, x1 = m.lig:coords():totable(), m.lig:pose_coords(pos, q, tors):totable()
    local moved = {}
    for _, i in ipairs(m.lig:torsions()[3].moves) do moved[i] = true end
    for i = 1, #x0 do
      local dd = 0
      for d = 1, 3 do dd = dd + (x1[i][d] - x0[i][d]) ^ 2 end
      if not moved[i] then close(dd, 0, 1e-20, "atom " .. i .. " stays") end
    end
    for _, b in ipairs(m.lig:bonds()) do
      local l0, l1 = 0, 0
      for d = 1, 3 do
        l0 = l0 + (x0[b[1]][d] - x0[b[2]][d]) ^ 2
        l1 = l1 + (x1[b[1]][d] - x1[b[2]][d]) ^ 2
      end
      close(math.sqrt(l1), math.sqrt(l0), 1e-9, "bond length")
    end
  end)
end)

local LIG = [[
REMARK  a small test ligand
ROOT
ATOM      1  C   UNL     1       0.000   0.000   0.000  0.00  0.00    +0.000 C 
ATOM      2  N   UNL     1       1.470   0.000   0.000  0.00  0.00    +0.000 N 
ATOM      3  H   UNL     1       1.800   0.950   0.000  0.00  0.00    +0.000 HD
ENDROOT
BRANCH   1   4
ATOM      4  C   UNL     1      -0.520  -1.450   0.000  0.00  0.00    +0.000 C 
ATOM      5  O   UNL     1      -1.940  -1.480   0.000  0.00  0.00    +0.000 OA
ENDBRANCH   1   4
TORSDOF 1
]]

describe("PDBQT reading and typing", function()
  it("types carbon by its neighbours and N/O by H and acceptor types", function()
    local p = write_tmp(LIG)
    local lig = dock.ligand(p)
    os.remove(p)
    local xs = {}
    for _, a in ipairs(lig:atoms()) do xs[a.serial] = a.xs end
    assert.are.equal("C_P", xs[1]) -- bonded to N
    assert.are.equal("N_D", xs[2]) -- N with an HD
    assert.are.equal("none", xs[3])
    assert.are.equal("C_P", xs[4]) -- bonded to O
    assert.are.equal("O_A", xs[5]) -- OA, no HD
    assert.are.equal(4, lig:info().nbonds)
  end)

  it("reads one ligand per MODEL", function()
    local p = write_tmp("MODEL 1\n" .. LIG .. "ENDMDL\nMODEL 2\n" .. LIG .. "ENDMDL\n")
    local all = dock.read_ligands(p)
    assert.are.equal(2, #all)
    assert.are.equal(2, all[2]:info().model)
    fails("no model 3", dock.ligand, p, {model = 3})
    os.remove(p)
  end)

  it("tolerates MASTER, CONECT, TER and REMARK records in a receptor", function()
    local rec = "REMARK x\n" ..
      "ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00  0.00    -0.300 N \n" ..
      "ATOM      2  CA  ALA A   1       1.460   0.000   0.000  1.00  0.00     0.100 C \n" ..
      "TER\nCONECT    1    2\nMASTER        0    0    0    0    0    0    0    0    2    0    2    0\nEND\n"
    local p = write_tmp(rec)
    local r = dock.receptor(p)
    os.remove(p)
    local atoms = r:atoms()
    assert.are.equal(2, #atoms)
    assert.are.equal("C_P", atoms[2].xs)
    assert.are.equal("A", atoms[1].chain)
    assert.are.equal("ALA", atoms[1].resname)
    close(atoms[1].charge, -0.3, 1e-12, "charge")
  end)
end)

describe("bad input gives clear errors", function()
  it("missing file", function()
    fails("cannot open", dock.receptor, "/nonexistent/receptor.pdbqt")
    fails("cannot open", dock.ligand, "/nonexistent/ligand.pdbqt")
    fails("cannot open", dock.box_from_file, "/nonexistent/box.txt")
  end)

  it("malformed lines name the file and line", function()
    local bad = LIG:gsub("  1.470   0.000", "  1.4x0   0.000")
    local p = write_tmp(bad)
    fails(p .. ":4: x coordinate '1.4x0' (columns 31-38) is not a number", dock.ligand, p)
    os.remove(p)
  end)

  it("unknown atom type, unclosed BRANCH, BRANCH to a missing atom, no TORSDOF", function()
    local cases = {
      {LIG:gsub("OA\n", "Qq\n"), ":9: 'Qq' is not an AutoDock atom type"},
      {LIG:gsub("ENDBRANCH   1   4\n", ""), "never closed"},
      {LIG:gsub("BRANCH   1   4", "BRANCH   9   4", 1), ":7: BRANCH 9 4: no atom 9"},
      {LIG:gsub("TORSDOF 1\n", ""), "missing TORSDOF"},
      {LIG:gsub("ROOT\n", "", 1), "atom before ROOT"},
      {LIG .. "FOO bar\n", "unknown record 'FOO ba'"},
    }
    for _, c in ipairs(cases) do
      local p = write_tmp(c[1])
      fails(c[2], dock.ligand, p)
      os.remove(p)
    end
  end)

  it("empty ligand and empty receptor", function()
    local p = write_tmp("ROOT\nENDROOT\nTORSDOF 0\n")
    fails("no atoms in the ligand", dock.ligand, p)
    os.remove(p)
    p = write_tmp("REMARK nothing here\n")
    fails("no ATOM/HETATM records", dock.receptor, p)
    os.remove(p)
  end)

  it("ligand outside the box", function()
    local m = complex(by_id("184l"))
    local far = dock.box{center = {0, 0, 0}, size = {10, 10, 10}}
    fails("is outside the box", dock.score, m.rec, m.lig, {box = far})
    fails("option 'box' is required", dock.score, m.rec, m.lig)
  end)

  it("bad boxes and options", function()
    fails("size[2] = -1", dock.box, {center = {0, 0, 0}, size = {10, -1, 10}})
    fails("center must be a table of 3 numbers", dock.box, {center = {0, 0}, size = {1, 1, 1}})
    local p = write_tmp("center_x = 1\ncenter_y = 2\nsize_x = 20\nsize_y = 20\nsize_z = 20\n")
    fails("missing center_z", dock.box_from_file, p)
    os.remove(p)
    local m = complex(by_id("184l"))
    fails("unknown method 'fast'", dock.score, m.rec, m.lig, {box = m.box, method = "fast"})
    local sc = dock.scorer(m.rec, m.box)
    fails("[10, 3] tensor", sc.energy, sc, m.lig, vl.zeros {3, 3})
  end)
end)
